#!/usr/bin/env bash
# Every script of the cloud kit, and these tests, pass ShellCheck.
. "$(dirname "$0")/lib.sh"
command -v shellcheck >/dev/null 2>&1 || {
	echo "skip: shellcheck is not installed (apt-get install shellcheck)"
	exit 77
}
scripts=()
for f in "$CLOUD"/* "$TESTS_CLOUD"/*.sh "$TESTS_CLOUD"/fake-bin/*; do
	[ -f "$f" ] || continue
	case "$(head -n 1 "$f")" in '#!'*sh*) scripts+=("$f") ;; esac
done
scripts+=("$TESTS_CLOUD/lib.sh")
check "found the kit's scripts (${#scripts[@]})" test "${#scripts[@]}" -ge 14
for f in "${scripts[@]}"; do
	if shellcheck -s bash -x -P "$(dirname "$f")" "$f" >"$WORK/sc" 2>&1; then pass "shellcheck ${f#"$TESTS_CLOUD"/../../}"; else
		fail "shellcheck ${f#"$TESTS_CLOUD"/../../}:"
		sed 's/^/    /' "$WORK/sc" >&2
	fi
done
finish
