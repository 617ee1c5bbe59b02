#!/usr/bin/env bash
# The boot scripts' functions for real (not dry run) where that is safe here:
# files under a temporary directory, image files as devices. Sourced with
# BOOT_SOURCE_ONLY=1 so that main does not run.
# shellcheck disable=SC2034,SC2016,SC2154 # settings read by the sourced functions; a literal $; an eval'd array
. "$(dirname "$0")/lib.sh"
IMG=$WORK/img
have_images=1
make_images "$IMG" || have_images=0
make_guards "$WORK/guard"
export PATH="$WORK/guard:$PATH"

# shellcheck disable=SC1091
BOOT_SOURCE_ONLY=1 DRY_RUN=0 . "$CLOUD/aws-user-data-worker.sh"
set +e

# ---- write_file: atomic, with its mode ----
printf 'a=1\nb=2\n' | write_file "$WORK/etc/x/conf" 0640
check "write_file: content" test "$(cat "$WORK/etc/x/conf")" = "$(printf 'a=1\nb=2')"
check "write_file: mode" test "$(stat -c %a "$WORK/etc/x/conf")" = 640
check "write_file: no temporary file left" test "$(find "$WORK/etc/x" -type f | wc -l)" -eq 1

# ---- ensure_fstab: one line per mount point, others untouched, idempotent ----
FSTAB=$WORK/fstab
MOUNT_POINT=/mnt/spottrain
printf '%s\n' 'UUID=root / ext4 defaults 0 1' 'UUID=old /mnt/spottrain ext4 defaults 0 2' 'tmpfs /tmp tmpfs defaults 0 0' >"$FSTAB"
ensure_fstab UUID=new ext4 defaults,noatime,nofail 2
ensure_fstab UUID=new ext4 defaults,noatime,nofail 2
check "ensure_fstab: the old line for the mount point is replaced" test "$(grep -c ' /mnt/spottrain ' "$FSTAB")" -eq 1
check "ensure_fstab: the new line" grep -qx 'UUID=new /mnt/spottrain ext4 defaults,noatime,nofail 0 2' "$FSTAB"
check "ensure_fstab: other lines kept" test "$(grep -c '^UUID=root / \|^tmpfs /tmp ' "$FSTAB")" -eq 2

# ---- shell_quote: what dry runs print reads back as the same arguments ----
args=(mount -o "a,b" "/path with space" "it's" '$HOME' "")
eval "back=($(shell_quote "${args[@]}"))"
check "shell_quote: round trip through the shell" test "$(declare -p args | sed 's/^declare -a args=//')" = "$(declare -p back | sed 's/^declare -a back=//')"

# ---- probe_fs and wait_for_device on image files ----
if [ "$have_images" = 1 ]; then
	r=0; t=$(probe_fs "$IMG/ext4.img") || r=$?
	check "probe_fs: ext4 image -> 0, ext4" test "$r:$t" = "0:ext4"
	r=0; probe_fs "$IMG/blank.img" >/dev/null 2>&1 || r=$?
	check "probe_fs: blank image -> 2" test "$r" -eq 2
	r=0; probe_fs "$IMG/mbr.img" >/dev/null 2>&1 || r=$?
	check "probe_fs: partition table -> 3 (never formatted)" test "$r" -eq 3
	r=0; probe_fs "$WORK/nonexistent" >/dev/null 2>&1 || r=$?
	check "probe_fs: missing path -> 3, not 'blank' (blkid says 2 for it)" test "$r" -eq 3
else
	echo "skip [probe_fs]: cannot make the images"
fi
DEV_DIR=$WORK/dev DEVICE_POLL_S=1
mkdir -p "$DEV_DIR"
start=$SECONDS
r=0; wait_for_device 2 "$DEV_DIR/a" "$DEV_DIR/b" >/dev/null || r=$?
check "wait_for_device: gives up after the timeout" test "$r" -eq 1 -a $((SECONDS - start)) -ge 2
(sleep 1 && touch "$DEV_DIR/b") &
found=$(wait_for_device 10 "$DEV_DIR/a" "$DEV_DIR/b")
wait
check "wait_for_device: the candidate that appears" test "$found" = "$DEV_DIR/b"
DEV_DIR=/dev
check "is_device: a regular file is not a device under /dev" bash -c "! [ -b '$FSTAB' ]"
r=0; is_device "$FSTAB" || r=$?
check "is_device: with DEV_DIR=/dev only block devices count" test "$r" -ne 0

# ---- lookup_volume: which volume is attached as EBS_DEVICE (then its by-id link) ----
mkdir -p "$WORK/awsfix"
echo "vol-0fedcba9876543210" >"$WORK/awsfix/describe-volumes.json"
INSTANCE_ID=i-0123456789abcdef0 EBS_DEVICE=/dev/sdf EBS_VOLUME_ID="" DEVICE_WAIT_S=5
PATH="$TESTS_CLOUD/fake-bin:$PATH" FAKE_AWS_DIR=$WORK/awsfix lookup_volume 2>/dev/null
check "lookup_volume: sets EBS_VOLUME_ID" test "$EBS_VOLUME_ID" = vol-0fedcba9876543210
expect_grep "lookup_volume: asks by instance and device name" "$FAKE_LOG" \
	'describe-volumes \| --filters \| Name=attachment.instance-id,Values=i-0123456789abcdef0 \| Name=attachment.device,Values=/dev/sdf'

# ---- the launcher's discovery command ----
# shellcheck disable=SC1091
BOOT_SOURCE_ONLY=1 DRY_RUN=0 . "$CLOUD/aws-user-data-launcher.sh"
set +e
AWS_REGION=eu-west-1 WORKER_ASG=spottrain-workers WORKER_SPOT_FLEET="" WORKER_TAG="" WORKER_SLOTS="" DISCOVER_COMMAND="" READY_TAG=spottrain:ready SPOTTRAIN_REF=v1.2.3
check "discover_command: ASG + readiness tag" test "$(discover_command)" = \
	"/usr/local/bin/spot-discover-aws --region eu-west-1 --cache-ttl 5 --asg spottrain-workers --tag spottrain:ready=v1.2.3"
# the command that spotlaunch would split and run, against the fake aws
cmd=$(discover_command)
# shellcheck disable=SC2206
argv=($cmd)
argv[0]=$CLOUD/spot-discover-aws
PATH="$TESTS_CLOUD/fake-bin:$PATH" FAKE_AWS_DIR=$FIX/aws/asg-mixed capture "${argv[@]}"
expect_rc "discover_command: runs (split at blanks, no shell)" 0
check "discover_command: prints hosts" test "$(wc -l <"$WORK/out")" -eq 4

# ---- GCP ----
# shellcheck disable=SC1091
BOOT_SOURCE_ONLY=1 DRY_RUN=0 . "$CLOUD/gcp-startup-worker.sh"
set +e
check "label_value: a ref as a GCE label value" test "$(label_value V1.2.3-RC_1/x)" = "v1-2-3-rc_1-x"
long=$(label_value "$(printf 'a%.0s' {1..80})")
check "label_value: at most 63 characters" test "${#long}" -eq 63
check "no command that changes the machine ran" test ! -s "$WORK/violations"
finish
