#!/usr/bin/env bash
# The boot scripts end to end in dry-run mode (volume aside: see
# test_boot_volume.sh): the pinned checkout and build, the ssh key from the
# secret store, the readiness signal, the launcher's unit and its discovery
# command, the single-VM unit; and the shared blocks are the same in each file.
. "$(dirname "$0")/lib.sh"
make_guards "$WORK/guard"
export PATH="$WORK/guard:$PATH"

boot() { # boot SCRIPT VAR=VALUE...: dry run with no volume (VOLUME_KIND=none)
	local script=$1
	shift
	: >"$WORK/violations"
	capture env DRY_RUN=1 VOLUME_KIND=none MOUNT_POINT=/mnt/spottrain SRC_DIR="$WORK/src" \
		INSTANCE_ID=i-0123456789abcdef0 AZ=us-east-1a AWS_REGION=us-east-1 \
		INSTANCE_NAME=spottrain-workers-x7k2 ZONE=us-central1-a PROJECT=spottrain-demo \
		SPOTTRAIN_REF=v9.8.7 "$@" bash "$CLOUD/$script"
}
no_violations() { check "$1: nothing was changed (dry run)" test ! -s "$WORK/violations"; }

# ---- AWS worker ----
boot aws-user-data-worker.sh
expect_rc "aws worker" 0
expect_grep "aws worker: checks out the pinned ref" "$WORK/out" "^\+ git -C $WORK/src -c advice.detachedHead=false checkout --quiet --force v9.8.7$"
expect_grep "aws worker: builds portable code for a mixed fleet" "$WORK/out" '^\+ cmake -S .* -DCMAKE_BUILD_TYPE=Release -DSPOTTRAIN_NATIVE=OFF'
expect_grep "aws worker: installs the discovery programs" "$WORK/out" '^\+ install -m 0755 -t /usr/local/bin .*spot-discover-aws'
expect_grep "aws worker: the project's deps.sh installs the packages" "$WORK/out" 'scripts/deps.sh.*spottrain_install_deps'
expect_grep "aws worker: ssh key from SSM, decrypted" "$WORK/out" '^\+ aws ssm get-parameter --name /spottrain/mpi-ssh-key --with-decryption'
expect_grep "aws worker: ssh config for the fleet's addresses" "$WORK/out" '^\|  Host 10\.\* 172\.\* 192\.168\.\*$'
expect_grep "aws worker: tags itself ready with the ref" "$WORK/out" \
	'^\+ aws ec2 create-tags --resources i-0123456789abcdef0 --tags Key=spottrain:ready,Value=v9.8.7$'
expect_nogrep "aws worker: no single-node unit" "$WORK/out" 'spottrain-single.service'
no_violations "aws worker"
boot aws-user-data-worker.sh SSH_KEY_SOURCE=secretsmanager:spottrain/mpi-ssh-key LIFECYCLE_HOOK=spottrain-ready ASG_NAME=spottrain-workers READY_TAG=
expect_grep "aws worker: ssh key from Secrets Manager" "$WORK/out" '^\+ aws secretsmanager get-secret-value --secret-id spottrain/mpi-ssh-key'
expect_grep "aws worker: completes the lifecycle hook" "$WORK/out" \
	'^\+ aws autoscaling complete-lifecycle-action --lifecycle-hook-name spottrain-ready --auto-scaling-group-name spottrain-workers --instance-id i-0123456789abcdef0 --lifecycle-action-result CONTINUE$'
expect_nogrep "aws worker: READY_TAG= sets no tag" "$WORK/out" 'create-tags'
boot aws-user-data-worker.sh ROLE=single RUN_NAME=fmnist SPOTTRAIN_TRAIN_ARGS="--epochs 3" DONE_ACTION=cancel-spot-request
expect_rc "aws single" 0
expect_grep "aws single: single.env names the run on the volume" "$WORK/out" '^\|  SPOTTRAIN_RUN_DIR="/mnt/spottrain/fmnist"$'
expect_grep "aws single: single.env keeps the extra arguments" "$WORK/out" '^\|  SPOTTRAIN_TRAIN_ARGS="--epochs 3"$'
expect_grep "aws single: DONE_ACTION" "$WORK/out" '^\|  DONE_ACTION="cancel-spot-request"$'
expect_grep "aws single: the unit is tied to the volume's mount" "$WORK/out" '^\|  RequiresMountsFor=/mnt/spottrain$'
expect_grep "aws single: unit enabled and started" "$WORK/out" '^\+ systemctl enable --now spottrain-single.service$'
expect_nogrep "aws single: no ssh key, no readiness tag" "$WORK/out" 'ssm get-parameter|create-tags'
no_violations "aws single"
boot aws-user-data-worker.sh MPI_IF_INCLUDE=10.0.0.0/16
expect_grep "aws worker: MPI_IF_INCLUDE keeps Open MPI on the VPC" "$WORK/out" '^\|  btl_tcp_if_include = 10.0.0.0/16$'
expect_grep "aws worker: ... for the out-of-band channel too" "$WORK/out" '^\|  oob_tcp_if_include = 10.0.0.0/16$'
boot aws-user-data-worker.sh ROLE=launcher
check "aws worker: ROLE=launcher is refused (use the launcher script)" test "$RC" -ne 0
boot aws-user-data-worker.sh --bogus
check "aws worker: unknown argument refused" test "$RC" -ne 0
capture bash "$CLOUD/aws-user-data-worker.sh" --help
expect_rc "aws worker --help" 0

# ---- AWS launcher ----
boot aws-user-data-launcher.sh MIN_NP=3 MAX_NP=12
expect_rc "aws launcher" 0
expect_grep "aws launcher: discovery by ASG, ready workers of this ref only" "$WORK/out" \
	'^\|  SPOTLAUNCH_DISCOVER="/usr/local/bin/spot-discover-aws --region us-east-1 --cache-ttl 5 --asg spottrain-workers --tag spottrain:ready=v9.8.7"$'
expect_grep "aws launcher: world size bounds" "$WORK/out" '^\|  SPOTLAUNCH_ARGS="--min-np 3 --max-np 12 --max-failures 20 ?"$'
expect_grep "aws launcher: the run directory on the volume" "$WORK/out" '^\|  SPOTTRAIN_RUN_DIR="/mnt/spottrain/mnist_cnn"$'
expect_grep "aws launcher: train arguments name the config" "$WORK/out" '^\|  SPOTTRAIN_TRAIN_ARGS="--config /opt/spottrain/src/configs/mnist_cnn.ini ?"$'
expect_grep "aws launcher: scales the workers to zero when done" "$WORK/out" \
	'^\|  FLEET_DONE_COMMAND="aws autoscaling update-auto-scaling-group --region us-east-1 --auto-scaling-group-name spottrain-workers --min-size 0 --desired-capacity 0"$'
expect_grep "aws launcher: spotlaunch.service installed from the checkout" "$WORK/out" \
	"^\+ install -m 0644 $WORK/src/configs/cloud/systemd/spotlaunch.service /etc/systemd/system/spotlaunch.service$"
expect_grep "aws launcher: enabled and started" "$WORK/out" '^\+ systemctl enable --now spotlaunch.service$'
expect_grep "aws launcher: the ssh key for mpirun" "$WORK/out" '^\+ aws ssm get-parameter'
expect_nogrep "aws launcher: does not tag itself as a worker" "$WORK/out" 'create-tags'
no_violations "aws launcher"
boot aws-user-data-launcher.sh WORKER_TAG=spotinst:aws:ec2:group:id=sig-5f6e7d8c WORKER_SLOTS=4
expect_grep "aws launcher: Elastigroup by tag, fixed slots" "$WORK/out" \
	'SPOTLAUNCH_DISCOVER=".*--tag spotinst:aws:ec2:group:id=sig-5f6e7d8c --tag spottrain:ready=v9.8.7 --slots 4"'
expect_grep "aws launcher: no ASG to scale down for a tag fleet" "$WORK/out" '^\|  FLEET_DONE_COMMAND=""$'
boot aws-user-data-launcher.sh WORKER_SPOT_FLEET=sfr-8a3c7e2b-64d1-4b9c-9f0a-1c2d3e4f5a6b
expect_grep "aws launcher: Spot Fleet" "$WORK/out" 'SPOTLAUNCH_DISCOVER=".*--spot-fleet sfr-8a3c7e2b-64d1-4b9c-9f0a-1c2d3e4f5a6b'
boot aws-user-data-launcher.sh 'DISCOVER_COMMAND=/usr/local/bin/spot-discover-aws --asg x;reboot'
check "aws launcher: shell characters in the discovery command refused" test "$RC" -ne 0

# ---- GCP ----
boot gcp-startup-worker.sh
expect_rc "gcp worker" 0
expect_grep "gcp worker: ssh key from Secret Manager" "$WORK/out" \
	'^\+ gcloud secrets versions access latest --secret spottrain-mpi-ssh-key --project spottrain-demo$'
expect_grep "gcp worker: labels itself ready (ref as a label value)" "$WORK/out" \
	'^\+ gcloud compute instances add-labels spottrain-workers-x7k2 --zone us-central1-a --project spottrain-demo --labels spottrain-ready=v9-8-7$'
no_violations "gcp worker"
boot gcp-startup-worker.sh ROLE=launcher WORKER_REGION=us-central1
expect_rc "gcp launcher" 0
expect_grep "gcp launcher: MIG discovery of ready workers" "$WORK/out" \
	'^\|  SPOTLAUNCH_DISCOVER="/usr/local/bin/spot-discover-gcp --group spottrain-workers --region us-central1 --project spottrain-demo --cache-ttl 10 --label spottrain-ready=v9-8-7"$'
expect_grep "gcp launcher: resizes the MIG to zero when done" "$WORK/out" \
	'FLEET_DONE_COMMAND="gcloud compute instance-groups managed resize spottrain-workers --size 0 --region us-central1 --project spottrain-demo"'
expect_grep "gcp launcher: unit" "$WORK/out" '^\+ systemctl enable --now spotlaunch.service$'
boot gcp-startup-worker.sh ROLE=single
expect_grep "gcp single: unit" "$WORK/out" '^\+ systemctl enable --now spottrain-single.service$'
no_violations "gcp roles"

# ---- user data as the README builds it: exports in front, gzip'ed ----
{
	echo '#!/bin/bash'
	echo "export SPOTTRAIN_REF=v7.7.7 VOLUME_KIND=none MPI_IF_INCLUDE=10.0.0.0/16 SRC_DIR=$WORK/src DRY_RUN=1"
	echo "export INSTANCE_ID=i-0123456789abcdef0 AZ=us-east-1a AWS_REGION=us-east-1 MOUNT_POINT=/mnt/spottrain"
	tail -n +2 "$CLOUD/aws-user-data-worker.sh"
} | gzip -9 >"$WORK/ud.gz"
gunzip -c "$WORK/ud.gz" >"$WORK/ud.sh"
: >"$WORK/violations"
capture bash "$WORK/ud.sh"
expect_rc "README-style user data (exports + script, gzip'ed)" 0
expect_grep "README-style user data: the exported ref wins over the default" "$WORK/out" 'checkout --quiet --force v7.7.7$'
no_violations "README-style user data"

# ---- the shared blocks are the same in every file ----
block() { sed -n "/^# >>> spottrain boot $1/,/^# <<< spottrain boot $1/p" "$CLOUD/$2"; }
block common aws-user-data-worker.sh >"$WORK/common.ref"
check "the common block is there" test "$(wc -l <"$WORK/common.ref")" -gt 100
for f in aws-user-data-launcher.sh gcp-startup-worker.sh; do
	block common "$f" >"$WORK/common.other"
	if diff -u "$WORK/common.ref" "$WORK/common.other" >"$WORK/diff"; then pass "common block of $f = aws-user-data-worker.sh's"; else
		fail "common block of $f differs from aws-user-data-worker.sh's:"
		cat "$WORK/diff" >&2
	fi
done
block aws aws-user-data-worker.sh >"$WORK/aws.ref"
block aws aws-user-data-launcher.sh >"$WORK/aws.other"
check "the aws block is the same in both AWS scripts" diff -q "$WORK/aws.ref" "$WORK/aws.other"
check "the aws block is there" test "$(wc -l <"$WORK/aws.ref")" -gt 50

# ---- EC2 user data limit: 16 KB raw; these go in gzip'ed (cloud-init unpacks) ----
for f in aws-user-data-worker.sh aws-user-data-launcher.sh; do
	n=$(gzip -9c "$CLOUD/$f" | wc -c)
	check "$f gzip'ed fits EC2's 16 KB user data ($n bytes)" test "$n" -lt 16384
done

# ---- no credentials in the kit ----
expect_nogrep "no AWS access keys in configs/cloud" <(cat "$CLOUD"/* "$CLOUD"/systemd/* 2>/dev/null) 'AKIA[0-9A-Z]{16}|aws_secret_access_key|BEGIN [A-Z ]*PRIVATE KEY'
finish
