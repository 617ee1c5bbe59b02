#!/usr/bin/env bash
# The systemd units: what they promise (restart on failure, 75 is a clean end,
# the stop goes to the main process only), `systemd-analyze verify` finds nothing
# to say about them, and spotlaunch-on-stop acts only after a finished run.
# shellcheck disable=SC2016 # the $ in these patterns and stubs is literal
. "$(dirname "$0")/lib.sh"
U=$CLOUD/systemd
L=$U/spotlaunch.service
S=$U/spottrain-single.service

# shellcheck disable=SC2317 # called through check
has() { grep -qx -- "$2" "$1"; }
check "spotlaunch: Restart=on-failure (survives crashes and its own reboot)" has "$L" 'Restart=on-failure'
check "spotlaunch: enabled at boot" has "$L" 'WantedBy=multi-user.target'
check "spotlaunch: the discovery command is one argument" grep -q -- '--discover ${SPOTLAUNCH_DISCOVER} ' "$L"
check "spotlaunch: ExecStart runs spotlaunch run ... -- spottrain train" grep -Eq '^ExecStart=/usr/local/bin/spotlaunch run --discover .* -- spottrain train \$SPOTTRAIN_TRAIN_ARGS$' "$L"
check "spotlaunch: SIGTERM to spotlaunch only, mpirun is adopted after a crash (KillMode=process)" has "$L" 'KillMode=process'
check "spotlaunch: exit 75 (stopped on SIGTERM) is not a failure" has "$L" 'SuccessExitStatus=75'
check "spotlaunch: no restart on config/data errors" has "$L" 'RestartPreventExitStatus=64 65 66'
check "spotlaunch: runs as the spottrain user (its ssh key)" has "$L" 'User=spottrain'
check "spotlaunch: on-stop hook as root" has "$L" 'ExecStopPost=+/usr/local/bin/spotlaunch-on-stop'
check "single: exit 75 is a clean end" has "$S" 'SuccessExitStatus=75'
check "single: Restart=on-failure" has "$S" 'Restart=on-failure'
check "single: no restart on config/data errors" has "$S" 'RestartPreventExitStatus=64 65 66'
check "single: KillMode=mixed" has "$S" 'KillMode=mixed'
check "single: enabled at boot" has "$S" 'WantedBy=multi-user.target'

if command -v systemd-analyze >/dev/null 2>&1 && [ -d /lib/systemd/system ]; then
	R=$WORK/root
	mkdir -p "$R/usr/local/bin" "$R/etc/systemd/system" "$R/etc/spottrain" "$R/usr/lib/systemd"
	cp -a /lib/systemd/system "$R/usr/lib/systemd/"
	for b in spotlaunch spotlaunch-on-stop spottrain-single-run; do
		printf '#!/bin/sh\n' >"$R/usr/local/bin/$b"
		chmod +x "$R/usr/local/bin/$b"
	done
	touch "$R/etc/spottrain/spotlaunch.env" "$R/etc/spottrain/single.env"
	cp "$L" "$S" "$R/etc/systemd/system/"
	for unit in spotlaunch.service spottrain-single.service; do
		mkdir -p "$R/etc/systemd/system/$unit.d"
		printf '[Unit]\nRequiresMountsFor=/mnt/spottrain\n' >"$R/etc/systemd/system/$unit.d/volume.conf"
		RC=0
		systemd-analyze verify --man=no --root="$R" "$unit" >"$WORK/verify" 2>&1 || RC=$?
		if [ "$RC" -eq 0 ] && [ ! -s "$WORK/verify" ]; then pass "systemd-analyze verify $unit: clean"; else
			fail "systemd-analyze verify $unit (exit $RC):"
			sed 's/^/    /' "$WORK/verify" >&2
		fi
	done
else
	echo "skip [systemd-analyze verify]: systemd-analyze is not installed"
fi

# ---- spotlaunch-on-stop ----
mkdir -p "$WORK/bin"
printf '#!/bin/sh\necho "systemctl $*" >>"$FAKE_LOG"\n' >"$WORK/bin/systemctl"
chmod +x "$WORK/bin/systemctl"
mkdir -p "$WORK/awsfix"
echo '{}' >"$WORK/awsfix/update-auto-scaling-group.json"
onstop() {
	: >"$FAKE_LOG"
	capture env PATH="$WORK/bin:$PATH" FAKE_AWS_DIR="$WORK/awsfix" \
		FLEET_DONE_COMMAND="aws autoscaling update-auto-scaling-group --auto-scaling-group-name spottrain-workers --min-size 0 --desired-capacity 0" \
		"$@" "$CLOUD/spotlaunch-on-stop"
}
onstop SERVICE_RESULT=success EXIT_CODE=exited EXIT_STATUS=0
expect_rc "on-stop after a finished run" 0
expect_grep "on-stop: disables spotlaunch.service" "$FAKE_LOG" '^systemctl disable spotlaunch.service$'
expect_grep "on-stop: scales the workers to zero (no shell)" "$FAKE_LOG" \
	'^aws \| autoscaling \| update-auto-scaling-group \| --auto-scaling-group-name \| spottrain-workers \| --min-size \| 0 \| --desired-capacity \| 0$'
onstop SERVICE_RESULT=exit-code EXIT_CODE=exited EXIT_STATUS=1
expect_rc "on-stop after a failure" 0
check "on-stop after a failure: does nothing" test ! -s "$FAKE_LOG"
onstop SERVICE_RESULT=success EXIT_CODE=killed EXIT_STATUS=TERM
check "on-stop after systemctl stop: does nothing" test ! -s "$FAKE_LOG"
onstop SERVICE_RESULT=success EXIT_CODE=exited EXIT_STATUS=0 DRY_RUN=1
expect_grep "on-stop dry run: prints the commands" "$WORK/out" '^\+ systemctl disable spotlaunch.service$'
check "on-stop dry run: runs nothing" test ! -s "$FAKE_LOG"
finish
