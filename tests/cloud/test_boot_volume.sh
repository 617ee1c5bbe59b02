#!/usr/bin/env bash
# The data-volume logic of the boot scripts, in dry-run mode, against image
# files standing in for devices (real blkid): a blank device is formatted, a
# formatted one is only mounted, anything else is refused, a missing one ends in
# a clear timeout. Commands that would change the machine are guarded: a dry
# run that ran one fails the test.
. "$(dirname "$0")/lib.sh"
if ! command -v blkid >/dev/null || ! command -v mkfs.ext4 >/dev/null; then
	echo "skip: needs blkid and mkfs.ext4 (util-linux, e2fsprogs)"
	exit 77
fi
IMG=$WORK/img
make_images "$IMG" || {
	echo "skip: cannot make an ext4 image"
	exit 77
}
make_guards "$WORK/guard"
export PATH="$WORK/guard:$PATH"
VOL=vol-0123456789abcdef0
BYID=nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0

# boot SCRIPT IMAGE|- [VAR=VALUE...]: fresh /dev and mount point, the image as
# the NVMe device behind the EBS by-id link (or the GCP by-id link), dry run
boot() {
	local script=$1 image=$2
	shift 2
	rm -rf "${WORK:?}/dev" "${WORK:?}/mnt"
	mkdir -p "$WORK/dev/disk/by-id" "$WORK/mnt"
	if [ "$image" != - ]; then
		cp "$IMG/$image" "$WORK/dev/nvme1n1"
		ln -s ../../nvme1n1 "$WORK/dev/disk/by-id/$BYID"
		ln -s ../../nvme1n1 "$WORK/dev/disk/by-id/google-spottrain-data"
	fi
	: >"$WORK/violations"
	capture env DRY_RUN=1 DEV_DIR="$WORK/dev" MOUNT_POINT="$WORK/mnt" SRC_DIR="$WORK/src" \
		PREFIX="$WORK/prefix" BUILD_DIR="$WORK/build" FSTAB="$WORK/fstab" DEVICE_WAIT_S=2 DEVICE_POLL_S=1 \
		EBS_VOLUME_ID=$VOL INSTANCE_ID=i-0123456789abcdef0 AZ=us-east-1a AWS_REGION=us-east-1 \
		INSTANCE_NAME=spottrain-workers-x7k2 ZONE=us-central1-a PROJECT=spottrain-demo \
		"$@" bash "$CLOUD/$script"
}
no_violations() { check "$1: no command that changes the machine ran" test ! -s "$WORK/violations"; }

for script in aws-user-data-worker.sh aws-user-data-launcher.sh gcp-startup-worker.sh; do
	extra=()
	[ "$script" != aws-user-data-launcher.sh ] || extra=(VOLUME_KIND=ebs)
	dev="$WORK/dev/nvme1n1"

	boot "$script" blank.img "${extra[@]}"
	expect_rc "$script blank device" 0
	expect_grep "$script blank: mkfs.ext4 on the device" "$WORK/out" "^\+ mkfs.ext4 -q -L spottrain -m 0 $dev$"
	expect_grep "$script blank: mounted" "$WORK/out" "^\+ mount -o noatime -t ext4 $dev $WORK/mnt$"
	expect_grep "$script blank: fstab entry with nofail" "$WORK/out" "^\+ fstab .*$WORK/mnt ext4 defaults,noatime,nofail"
	expect_grep "$script blank: says it is blank" "$WORK/err" "is blank \(no signature of any kind\)"
	no_violations "$script blank"

	boot "$script" ext4.img "${extra[@]}"
	expect_rc "$script formatted device" 0
	expect_nogrep "$script formatted: NO mkfs" "$WORK/out" 'mkfs'
	expect_grep "$script formatted: mounted as it is" "$WORK/out" "^\+ mount -o noatime -t ext4 $dev $WORK/mnt$"
	uuid=$(blkid -s UUID -o value "$IMG/ext4.img")
	expect_grep "$script formatted: fstab by the filesystem's UUID" "$WORK/out" "^\+ fstab .*: UUID=$uuid $WORK/mnt ext4 "
	no_violations "$script formatted"

	start=$SECONDS
	boot "$script" - "${extra[@]}"
	check "$script missing device: non-zero exit" test "$RC" -ne 0
	expect_grep "$script missing: a clear timeout error" "$WORK/err" "ERROR: the data volume did not appear within 2 s \(looked for: .*by-id"
	expect_nogrep "$script missing: no mkfs" "$WORK/out" 'mkfs'
	expect_nogrep "$script missing: no mount" "$WORK/out" '^\+ mount'
	check "$script missing: waited about DEVICE_WAIT_S" test $((SECONDS - start)) -ge 2 -a $((SECONDS - start)) -le 15
	no_violations "$script missing"

	boot "$script" mbr.img "${extra[@]}"
	check "$script partition table: refused" test "$RC" -ne 0
	expect_nogrep "$script partition table: no mkfs" "$WORK/out" 'mkfs'
	expect_grep "$script partition table: says why" "$WORK/err" 'not blank but holds no filesystem.*PTTYPE=dos'
	no_violations "$script partition table"
done

# ---- AWS naming: NVMe by-id link, else the Xen / sd name ----
boot aws-user-data-worker.sh - EBS_DEVICE=/dev/sdf
cp "$IMG/ext4.img" "$WORK/dev/xvdf"
boot_keep() { # the same as boot, without resetting /dev
	capture env DRY_RUN=1 DEV_DIR="$WORK/dev" MOUNT_POINT="$WORK/mnt" SRC_DIR="$WORK/src" PREFIX="$WORK/prefix" \
		FSTAB="$WORK/fstab" DEVICE_WAIT_S=4 DEVICE_POLL_S=1 INSTANCE_ID=i-0123456789abcdef0 AZ=us-east-1a \
		AWS_REGION=us-east-1 "$@" bash "$CLOUD/aws-user-data-worker.sh"
}
boot_keep EBS_VOLUME_ID=$VOL EBS_DEVICE=/dev/sdf
expect_rc "Xen instance: the volume as /dev/xvdf" 0
expect_nogrep "a volume id given: no lookup" "$WORK/out" 'describe-volumes'
boot_keep EBS_VOLUME_ID= EBS_DEVICE=/dev/sdf
expect_grep "no volume id: looks up the volume attached as EBS_DEVICE" "$WORK/out" \
	"^\+ aws ec2 describe-volumes --filters Name=attachment.instance-id,Values=i-0123456789abcdef0 Name=attachment.device,Values=/dev/sdf --query 'Volumes\[0\].VolumeId' --output text$"
expect_grep "Xen instance: mounts /dev/xvdf" "$WORK/out" "^\+ mount -o noatime -t ext4 $WORK/dev/xvdf "
# a device that appears while the script waits (the attachment takes a few seconds)
rm -f "$WORK/dev/xvdf"
(sleep 2 && cp "$IMG/ext4.img" "$WORK/dev/nvme2n1" && ln -s ../../nvme2n1 "$WORK/dev/disk/by-id/$BYID") &
boot_keep EBS_VOLUME_ID=$VOL
wait
expect_rc "late device: found while waiting" 0
expect_grep "late device: mounted" "$WORK/out" "^\+ mount -o noatime -t ext4 $WORK/dev/nvme2n1 "
expect_grep "late device: the by-id name of the volume id" "$WORK/err" "data volume: .*/$BYID -> $WORK/dev/nvme2n1"

# ---- other refusals and choices ----
if [ -f "$IMG/swap.img" ]; then
	boot aws-user-data-worker.sh swap.img
	check "swap signature: refused" test "$RC" -ne 0
	expect_nogrep "swap signature: no mkfs" "$WORK/out" 'mkfs'
fi
mkdir -p "$WORK/fakeblkid"
printf '#!/bin/sh\necho "ambivalent result (probably more filesystems on the device)" >&2\nexit 8\n' >"$WORK/fakeblkid/blkid"
chmod +x "$WORK/fakeblkid/blkid"
PATH="$WORK/fakeblkid:$PATH" boot aws-user-data-worker.sh blank.img
check "blkid ambivalent (exit 8): refused" test "$RC" -ne 0
expect_nogrep "blkid ambivalent: no mkfs" "$WORK/out" 'mkfs'
expect_grep "blkid ambivalent: reported" "$WORK/err" 'blkid -p .* failed \(exit 8'
boot aws-user-data-worker.sh blank.img FS_TYPE=xfs
expect_grep "FS_TYPE=xfs: mkfs.xfs" "$WORK/out" "^\+ mkfs.xfs -q -L spottrain $WORK/dev/nvme1n1$"
printf '#!/bin/sh\nexit 0\n' >"$WORK/fakeblkid/mountpoint"
chmod +x "$WORK/fakeblkid/mountpoint"
rm "$WORK/fakeblkid/blkid"
PATH="$WORK/fakeblkid:$PATH" boot aws-user-data-worker.sh blank.img
expect_rc "already mounted (a re-run)" 0
expect_nogrep "already mounted: no mkfs, no mount" "$WORK/out" 'mkfs|^\+ mount '
expect_grep "already mounted: says so" "$WORK/err" 'is already mounted'

# ---- attach, EFS, NFS ----
boot aws-user-data-worker.sh blank.img EBS_ATTACH=1
expect_grep "EBS_ATTACH=1: attach-volume to this instance" "$WORK/out" \
	"^\+ aws ec2 attach-volume --volume-id $VOL --instance-id i-0123456789abcdef0 --device /dev/sdf$"
boot aws-user-data-worker.sh - EBS_ATTACH=1 EBS_VOLUME_ID= EBS_POOL_TAG=spottrain-pool=run1
expect_grep "EBS_POOL_TAG: looks for an available volume of the pool in this zone" "$WORK/out" \
	'^\+ aws ec2 describe-volumes --filters Name=tag:spottrain-pool,Values=run1 Name=availability-zone,Values=us-east-1a Name=status,Values=available'
boot aws-user-data-worker.sh - VOLUME_KIND=efs EFS_ID=fs-0abc1234
expect_rc "EFS" 0
expect_grep "EFS: mount -t nfs4 of the region's EFS name" "$WORK/out" \
	"^\+ mount -t nfs4 -o nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport fs-0abc1234.efs.us-east-1.amazonaws.com:/ $WORK/mnt$"
expect_grep "EFS: fstab with _netdev" "$WORK/out" "^\+ fstab .*fs-0abc1234.efs.us-east-1.amazonaws.com:/ $WORK/mnt nfs4 .*_netdev,nofail"
expect_nogrep "EFS: no block device logic" "$WORK/out" 'mkfs'
if ! dpkg-query -W -f='${Status}' nfs-common 2>/dev/null | grep -q "install ok installed"; then
	expect_grep "EFS: nfs-common installed" "$WORK/out" '^\+ env DEBIAN_FRONTEND=noninteractive apt-get .* install .*nfs-common'
fi
boot aws-user-data-worker.sh - VOLUME_KIND=efs
check "EFS without EFS_ID: refused" test "$RC" -ne 0
expect_grep "EFS without EFS_ID: says what is missing" "$WORK/err" 'needs EFS_ID'
boot gcp-startup-worker.sh blank.img PD_ATTACH=1 PD_DISK_NAME=spottrain-data-1
expect_grep "GCP PD_ATTACH=1: attach-disk with the device name" "$WORK/out" \
	'^\+ gcloud compute instances attach-disk spottrain-workers-x7k2 --disk spottrain-data-1 --device-name spottrain-data --zone us-central1-a --project spottrain-demo$'
boot gcp-startup-worker.sh - VOLUME_KIND=nfs NFS_SOURCE=10.20.0.2:/share
expect_grep "GCP Filestore: NFS mount" "$WORK/out" "^\+ mount -t nfs -o vers=3,hard,timeo=600,retrans=3 10.20.0.2:/share $WORK/mnt$"
no_violations "all the dry runs above"
finish
