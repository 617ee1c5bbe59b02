# Helpers for the cloud kit tests (sourced). Run by CTest (label `cloud`) or by
# hand: bash tests/cloud/test_discover_aws.sh. Only local processes: the cloud
# CLIs are fakes (fake-bin/) that serve recorded outputs from fixtures/.
# shellcheck disable=SC2034 # CLOUD, FIX, RC are for the tests that source this
set -uo pipefail

TESTS_CLOUD=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLOUD=$(cd "$TESTS_CLOUD/../../configs/cloud" && pwd)
FIX=$TESTS_CLOUD/fixtures
WORK=$(mktemp -d "${TMPDIR:-/tmp}/spottrain-cloud-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export FAKE_LOG=$WORK/calls.log
export SPOT_DISCOVER_CACHE_DIR=$WORK/cache
export PATH="$TESTS_CLOUD/fake-bin:$PATH:/usr/sbin:/sbin"
# never reach a real cloud from a test, whatever the fakes miss
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export CLOUDSDK_CONFIG=$WORK/gcloud-config CLOUDSDK_CORE_CHECK_GCE_METADATA=false

FAILS=0
TEST_NAME=$(basename "$0" .sh)

fail() {
	echo "FAIL [$TEST_NAME]: $*" >&2
	FAILS=$((FAILS + 1))
}
pass() { echo "ok   [$TEST_NAME]: $*"; }

# check NAME CONDITION...: run the condition, record pass/fail under NAME
check() {
	local name=$1
	shift
	if "$@"; then pass "$name"; else fail "$name"; fi
}

# capture CMD...: run CMD; stdout in $WORK/out, stderr in $WORK/err, exit in $RC
capture() {
	RC=0
	"$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
}

# expect_rc NAME WANT: the last capture exited WANT
expect_rc() {
	if [ "$RC" -eq "$2" ]; then
		pass "$1 (exit $2)"
	else
		fail "$1: expected exit $2, got $RC; stderr:"
		sed 's/^/    /' "$WORK/err" >&2
	fi
}

# expect_out NAME TEXT: the last stdout is exactly TEXT (lines)
expect_out() {
	if [ "$(cat "$WORK/out")" = "$2" ]; then
		pass "$1"
	else
		fail "$1: stdout differs; want:"
		printf '%s\n' "$2" | sed 's/^/    /' >&2
		echo "  got:" >&2
		sed 's/^/    /' "$WORK/out" >&2
	fi
}

# expect_grep NAME FILE PATTERN / expect_nogrep NAME FILE PATTERN (grep -E)
expect_grep() {
	if grep -Eq -- "$3" "$2"; then pass "$1"; else
		fail "$1: /$3/ not found in $(basename "$2"):"
		sed 's/^/    /' "$2" >&2
	fi
}
expect_nogrep() {
	if ! grep -Eq -- "$3" "$2"; then pass "$1"; else
		fail "$1: /$3/ found in $(basename "$2"):"
		grep -E -- "$3" "$2" | sed 's/^/    /' >&2
	fi
}

finish() {
	if [ "$FAILS" -gt 0 ]; then
		echo "$TEST_NAME: $FAILS check(s) failed" >&2
		exit 1
	fi
	echo "$TEST_NAME: all checks passed"
	exit 0
}

# make_guards DIR: commands that change a machine, as stand-ins that record
# their call in $WORK/violations and fail. Put DIR first on PATH when a dry run
# must not run any of them.
make_guards() {
	local c
	mkdir -p "$1"
	for c in mkfs mkfs.ext4 mkfs.xfs mount umount apt-get git cmake useradd groupadd systemctl \
		chown install ssh-keygen curl aws gcloud setpriv sfdisk wipefs; do
		printf '#!/bin/sh\necho "%s $*" >>"%s/violations"\necho "GUARD: %s must not run here" >&2\nexit 99\n' \
			"$c" "$WORK" "$c" >"$1/$c"
		chmod +x "$1/$c"
	done
	: >"$WORK/violations"
}

# make_images DIR: volume images for blkid: blank.img (zeros), ext4.img (an ext4
# filesystem), mbr.img (a partition table, no filesystem), swap.img (swap).
make_images() {
	mkdir -p "$1"
	truncate -s 16M "$1/blank.img"
	truncate -s 16M "$1/ext4.img"
	mkfs.ext4 -q -F -L spottrain "$1/ext4.img" >/dev/null 2>&1 || return 1
	python3 - "$1/mbr.img" <<'PY'
import struct, sys
b = bytearray(16 * 1024 * 1024)
b[440:444] = b"\x12\x34\x56\x78"
b[446:462] = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048, 16384)
b[510:512] = b"\x55\xaa"
open(sys.argv[1], "wb").write(b)
PY
	truncate -s 16M "$1/swap.img"
	mkswap "$1/swap.img" >/dev/null 2>&1 || rm -f "$1/swap.img"
}
