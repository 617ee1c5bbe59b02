#!/usr/bin/env bash
# aws-user-data-worker.sh - EC2 user data for a spottrain worker (a spot instance
# of the fleet's Auto Scaling group / Spot Fleet / Elastigroup), or, with
# ROLE=single, for the one-spot-instance case (spottrain-single.service).
#
# At boot it: installs git & co; creates the `spottrain` user (same uid on every
# node); waits for the data volume and mounts it (EBS by volume id, formatted only
# when blank; or EFS/NFS); checks out SPOTTRAIN_REF (a tag or commit, never a
# branch) and builds it; installs the fleet's ssh key from SSM Parameter Store /
# Secrets Manager for mpirun; then tells the launcher it is ready (a tag, and/or
# the Auto Scaling lifecycle hook). The launcher starts the ranks over ssh.
#
# Use: edit the settings below and pass the file as user data (launch template,
# run-instances). It is over EC2's 16 KB limit for raw user data: gzip it
# (`gzip -9c aws-user-data-worker.sh > ud.gz`, then fileb://ud.gz; cloud-init
# unpacks it). Safe to run again (every step checks first). Try it anywhere with
# --dry-run / DRY_RUN=1.
# Credentials: only the instance profile (configs/cloud/aws-iam-worker-policy.json).
set -uo pipefail

# ---- settings (edit, or set the same names in the environment) ----
: "${ROLE:=worker}"                 # worker | single (one VM trains alone, resumes at each boot)
: "${SPOTTRAIN_REPO:=https://github.com/your-org/spottrain.git}"
: "${SPOTTRAIN_REF:=v0.1.0}"        # git tag or full commit id: the version every node runs
: "${SPOTTRAIN_COMMIT:=}"           # optional: the commit SPOTTRAIN_REF must resolve to
: "${SPOTTRAIN_CUDA:=AUTO}"         # ON | OFF | AUTO (build the CUDA backend when nvcc exists)
: "${SPOTTRAIN_USER:=spottrain}"
: "${SPOTTRAIN_UID:=2001}"
: "${VOLUME_KIND:=ebs}"             # ebs | efs | nfs | none
: "${EBS_VOLUME_ID:=}"              # vol-...: found as /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol...
: "${EBS_DEVICE:=/dev/sdf}"         # device name of the attachment; without EBS_VOLUME_ID the
                                    # volume attached under this name is looked up (DescribeVolumes)
: "${EBS_ATTACH:=0}"                # 1: attach the volume here (EBS_VOLUME_ID, or one of EBS_POOL_TAG)
: "${EBS_POOL_TAG:=}"               # KEY=VALUE: any available volume with this tag in this zone
: "${EFS_ID:=}"                     # fs-... for VOLUME_KIND=efs (a mount target in each subnet)
: "${NFS_SOURCE:=}"                 # server:/export for VOLUME_KIND=nfs
: "${NFS_OPTIONS:=nfsvers=4.1,hard,timeo=600,retrans=2}"
: "${MOUNT_POINT:=/mnt/spottrain}"  # the same path on every node and on the launcher
: "${FS_TYPE:=ext4}"                # filesystem put on a blank EBS volume: ext4 | xfs
: "${FS_LABEL:=spottrain}"
: "${DEVICE_WAIT_S:=300}"           # how long to wait for the volume to appear
: "${SSH_KEY_SOURCE=ssm:/spottrain/mpi-ssh-key}"  # ssm:NAME | secretsmanager:ID | none
: "${SSH_HOST_PATTERNS:=10.* 172.* 192.168.*}"    # the fleet's private addresses
: "${MPI_IF_INCLUDE:=}"            # Open MPI TCP networks, e.g. the VPC CIDR 10.0.0.0/16 ("" = all)
: "${READY_TAG=spottrain:ready}"    # tag set to SPOTTRAIN_REF when ready ("" = none)
: "${LIFECYCLE_HOOK:=}"             # ASG launch lifecycle hook to complete when ready
: "${ASG_NAME:=}"                   # its Auto Scaling group
# ROLE=single only:
: "${RUN_NAME:=mnist_cnn}"          # the run directory: MOUNT_POINT/RUN_NAME
: "${SPOTTRAIN_CONFIG:=/opt/spottrain/src/configs/mnist_cnn.ini}"
: "${SPOTTRAIN_TRAIN_ARGS:=}"       # more `spottrain train` arguments (no spaces inside one)
: "${SPOTTRAIN_NP:=1}"              # ranks on this VM (one per GPU); >1 runs mpirun
: "${DONE_ACTION:=none}"            # none | poweroff | cancel-spot-request (then power off)
# ---- rarely changed ----
: "${SRC_DIR:=/opt/spottrain/src}" "${BUILD_DIR:=/opt/spottrain/build}" "${PREFIX:=/usr/local}"
: "${DEV_DIR:=/dev}" "${FSTAB:=/etc/fstab}" "${DEVICE_POLL_S:=2}" "${NFS_TRIES:=30}"
: "${DRY_RUN:=0}"
BOOT_PROG=aws-user-data-worker

# >>> spottrain boot common: keep byte-identical in aws-user-data-worker.sh,
# aws-user-data-launcher.sh and gcp-startup-worker.sh (tests/cloud checks it)

log() { printf '%s: %s\n' "$BOOT_PROG" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
is_dry() { [ "${DRY_RUN:-0}" = 1 ]; }

# shell_quote ARG...: the arguments as one line a shell reads back the same
shell_quote() {
	local a quoted=()
	for a in "$@"; do
		case $a in
		"" | *[!A-Za-z0-9_./:=,@%+-]*) quoted+=("'${a//\'/\'\\\'\'}'") ;;
		*) quoted+=("$a") ;;
		esac
	done
	printf '%s' "${quoted[*]}"
}

# run CMD...: run a command that changes the machine; in dry-run print it instead.
run() {
	if is_dry; then
		printf '+'
		printf ' %s' "$(shell_quote "$@")"
		printf '\n'
		return 0
	fi
	"$@"
}

# write_file PATH MODE < TEXT: write a file atomically; in dry-run print it.
write_file() {
	local path=$1 mode=$2 text
	text=$(cat)
	if is_dry; then
		printf '+ write %s (mode %s):\n' "$path" "$mode"
		printf '%s\n' "$text" | sed 's/^/|  /'
		return 0
	fi
	if ! { mkdir -p "$(dirname "$path")" && printf '%s\n' "$text" >"$path.tmp.$$" &&
		chmod "$mode" "$path.tmp.$$" && mv -f "$path.tmp.$$" "$path"; }; then
		die "cannot write $path"
	fi
}

boot_usage() {
	cat <<EOF
usage: $BOOT_PROG [--dry-run]

Boot-time set-up of a spottrain node. Configuration: the variables at the top of
this file, or the same names in the environment. --dry-run (or DRY_RUN=1) prints
every command that would change the machine instead of running it; probes (device
present, blkid, mountpoint, installed packages) still run, read-only.
EOF
}

boot_parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--dry-run) DRY_RUN=1 ;;
		-h | --help) boot_usage; exit 0 ;;
		*) die "unknown argument '$1' (try --help)" ;;
		esac
		shift
	done
	if ! is_dry; then
		[ "$(id -u)" -eq 0 ] || die "run as root (user-data and startup scripts are), or use --dry-run"
		mkdir -p /var/log && exec > >(tee -a /var/log/spottrain-boot.log) 2>&1
	fi
	log "start $(date -u +%Y-%m-%dT%H:%M:%SZ)$(is_dry && echo ' (dry run: nothing is changed)')"
}

# install_packages PKG...: apt-get install what is missing (waits for the dpkg
# lock that cloud-init / unattended-upgrades may hold at boot).
install_packages() {
	local p missing=()
	# every apt-get of this boot (deps.sh's too) waits for the lock instead of failing
	[ -e /etc/apt/apt.conf.d/90spottrain-lock-timeout ] ||
		printf 'DPkg::Lock::Timeout "600";\n' | write_file /etc/apt/apt.conf.d/90spottrain-lock-timeout 0644
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	log "installing ${missing[*]}"
	run apt-get -o DPkg::Lock::Timeout=600 update -q || die "apt-get update failed"
	run env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
		--no-install-recommends "${missing[@]}" || die "apt-get install ${missing[*]} failed"
}

# ensure_user: the account that owns the run and runs mpirun/spottrain, with the
# same uid on every node (files on a shared volume keep one owner).
ensure_user() {
	if id -u "$SPOTTRAIN_USER" >/dev/null 2>&1; then
		return 0
	fi
	run groupadd -g "$SPOTTRAIN_UID" "$SPOTTRAIN_USER" || die "groupadd $SPOTTRAIN_USER failed"
	run useradd -m -u "$SPOTTRAIN_UID" -g "$SPOTTRAIN_UID" -s /bin/bash "$SPOTTRAIN_USER" ||
		die "useradd $SPOTTRAIN_USER failed"
}

# ---- the data volume ----
# A device node counts as present when it is a block device; under a test
# DEV_DIR (not /dev) any file does, so the logic runs against image files.
is_device() { [ -b "$1" ] || { [ "$DEV_DIR" != /dev ] && [ -e "$1" ]; }; }

# wait_for_device TIMEOUT_S CANDIDATE...: print the first candidate that exists,
# polling every DEVICE_POLL_S; return 1 after TIMEOUT_S.
wait_for_device() {
	local timeout=$1 c deadline
	shift
	deadline=$((SECONDS + timeout))
	while :; do
		for c in "$@"; do
			if is_device "$c"; then
				printf '%s\n' "$c"
				return 0
			fi
		done
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep "$DEVICE_POLL_S"
	done
}

# probe_fs DEV: print the filesystem type and return 0 when DEV holds a
# filesystem; return 2 when blkid finds no signature at all (a blank volume);
# return 3 (with the reason on stderr) for anything else: a partition table,
# swap, RAID/LVM member, an ambivalent probe, or a blkid error.
probe_fs() {
	local dev=$1 out rc=0 type usage
	[ -r "$dev" ] || {
		log "cannot read $dev"
		return 3
	}
	out=$(blkid -p -o export "$dev" 2>&1) || rc=$?
	if [ "$rc" -eq 2 ] && [ -z "$out" ]; then
		return 2
	fi
	if [ "$rc" -ne 0 ]; then
		log "blkid -p $dev failed (exit $rc${out:+: $out})"
		return 3
	fi
	type=$(printf '%s\n' "$out" | sed -n 's/^TYPE=//p')
	usage=$(printf '%s\n' "$out" | sed -n 's/^USAGE=//p')
	if [ -n "$type" ] && [ "${usage:-filesystem}" = filesystem ]; then
		printf '%s\n' "$type"
		return 0
	fi
	log "$dev is not blank but holds no filesystem: $(printf '%s' "$out" | tr '\n' ' ')"
	return 3
}

# ensure_fstab SOURCE FSTYPE OPTIONS PASS: one line for MOUNT_POINT in FSTAB, so
# the volume comes back after a reboot (nofail: a missing volume never blocks boot).
ensure_fstab() {
	local line="$1 $MOUNT_POINT $2 $3 0 $4"
	if grep -qxF "$line" "$FSTAB" 2>/dev/null; then
		return 0
	fi
	if is_dry; then
		printf '+ fstab %s: %s\n' "$FSTAB" "$line"
		return 0
	fi
	if ! { awk -v mp="$MOUNT_POINT" '$2 != mp' "$FSTAB" >"$FSTAB.tmp.$$" &&
		printf '%s\n' "$line" >>"$FSTAB.tmp.$$" && mv -f "$FSTAB.tmp.$$" "$FSTAB"; }; then
		die "cannot update $FSTAB"
	fi
}

# mount_block_volume TIMEOUT_S CANDIDATE...: wait for the device, put a
# filesystem on it ONLY when it is blank, mount it on MOUNT_POINT.
mount_block_volume() {
	local timeout=$1 dev real fstype rc=0 uuid
	shift
	if mountpoint -q "$MOUNT_POINT" 2>/dev/null; then
		log "$MOUNT_POINT is already mounted"
		return 0
	fi
	log "waiting up to ${timeout} s for the data volume: $*"
	dev=$(wait_for_device "$timeout" "$@") ||
		die "the data volume did not appear within ${timeout} s (looked for: $*); is it attached to this instance, in this zone?"
	real=$(readlink -f "$dev")
	log "data volume: $dev -> $real"
	fstype=$(probe_fs "$real") || rc=$?
	case $rc in
	0) log "$real holds a $fstype filesystem: mounting it as it is" ;;
	2)
		log "$real is blank (no signature of any kind): creating an $FS_TYPE filesystem"
		case "$FS_TYPE" in
		ext4) run mkfs.ext4 -q -L "$FS_LABEL" -m 0 "$real" || die "mkfs.ext4 $real failed" ;;
		xfs) run mkfs.xfs -q -L "$FS_LABEL" "$real" || die "mkfs.xfs $real failed" ;;
		*) die "FS_TYPE must be ext4 or xfs, not '$FS_TYPE'" ;;
		esac
		fstype=$FS_TYPE
		;;
	*) die "refusing to format or mount $real (see above); fix the volume by hand" ;;
	esac
	run mkdir -p "$MOUNT_POINT" || die "cannot create $MOUNT_POINT"
	run mount -o noatime -t "$fstype" "$real" "$MOUNT_POINT" || die "mount $real on $MOUNT_POINT failed"
	uuid=$(blkid -p -s UUID -o value "$real" 2>/dev/null) || true
	[ -n "$uuid" ] || uuid="<uuid of $real>"
	ensure_fstab "UUID=$uuid" "$fstype" "defaults,noatime,nofail,x-systemd.device-timeout=30s" 2
}

# mount_nfs SOURCE TYPE OPTIONS: mount a shared NFS volume (EFS, Filestore, any
# NFS server), retrying while the server's name or address is not reachable yet.
mount_nfs() {
	local src=$1 type=$2 opts=$3 i
	if mountpoint -q "$MOUNT_POINT" 2>/dev/null; then
		log "$MOUNT_POINT is already mounted"
		return 0
	fi
	run mkdir -p "$MOUNT_POINT" || die "cannot create $MOUNT_POINT"
	for ((i = 1; ; i++)); do
		run mount -t "$type" -o "$opts" "$src" "$MOUNT_POINT" && break
		[ "$i" -lt "$NFS_TRIES" ] || die "mount -t $type $src on $MOUNT_POINT failed $NFS_TRIES times"
		log "mount $src failed; retrying in 10 s"
		sleep 10
	done
	ensure_fstab "$src" "$type" "$opts,_netdev,nofail" 0
}

# own_mount_point: the run's user owns the top of the volume (not recursive).
own_mount_point() {
	if is_dry || [ "$(stat -c %u "$MOUNT_POINT")" = 0 ]; then
		run chown "$SPOTTRAIN_USER:$SPOTTRAIN_USER" "$MOUNT_POINT"
	fi
}

# ---- the code: a pinned tag or commit, built and installed under PREFIX ----
checkout_and_build() {
	local head want
	if [ -d "$SRC_DIR/.git" ]; then
		head=$(git -C "$SRC_DIR" rev-parse HEAD 2>/dev/null) || head=""
		want=$(git -C "$SRC_DIR" rev-parse -q --verify "$SPOTTRAIN_REF^{commit}" 2>/dev/null) || want=""
		if [ -n "$head" ] && [ "$head" = "$want" ] && [ -x "$PREFIX/bin/spottrain" ] &&
			[ "$(cat "$PREFIX/share/spottrain/built-commit" 2>/dev/null)" = "$head" ]; then
			log "spottrain $SPOTTRAIN_REF ($head) is already built"
			return 0
		fi
	else
		run git clone --quiet --no-checkout "$SPOTTRAIN_REPO" "$SRC_DIR" || die "git clone $SPOTTRAIN_REPO failed"
	fi
	run git -C "$SRC_DIR" fetch --quiet --tags --force origin || die "git fetch in $SRC_DIR failed"
	run git -C "$SRC_DIR" -c advice.detachedHead=false checkout --quiet --force "$SPOTTRAIN_REF" ||
		die "cannot check out $SPOTTRAIN_REF (a tag or a commit of $SPOTTRAIN_REPO)"
	if ! is_dry; then
		head=$(git -C "$SRC_DIR" rev-parse HEAD)
		if [ -n "$SPOTTRAIN_COMMIT" ] && [ "$head" != "$SPOTTRAIN_COMMIT" ]; then
			die "$SPOTTRAIN_REF is commit $head, not the pinned SPOTTRAIN_COMMIT $SPOTTRAIN_COMMIT"
		fi
		log "building spottrain $SPOTTRAIN_REF ($head)"
	fi
	# the project's own package list (scripts/deps.sh) at the pinned version
	run bash -c '. "$1/scripts/deps.sh" && spottrain_install_deps' deps "$SRC_DIR" ||
		die "installing the build dependencies failed"
	# NATIVE=OFF: every node of a mixed-instance fleet runs the same code, so a
	# resume on other instance types keeps the same floating-point results
	run cmake -S "$SRC_DIR" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DSPOTTRAIN_NATIVE=OFF \
		-DSPOTTRAIN_CUDA="$SPOTTRAIN_CUDA" || die "cmake configure failed"
	run cmake --build "$BUILD_DIR" -j "$(nproc)" || die "build failed"
	run cmake --install "$BUILD_DIR" --prefix "$PREFIX" || die "install failed"
	run install -m 0755 -t "$PREFIX/bin" "$SRC_DIR/configs/cloud/spot-discover-aws" \
		"$SRC_DIR/configs/cloud/spot-discover-gcp" "$SRC_DIR/configs/cloud/spottrain-single-run" \
		"$SRC_DIR/configs/cloud/spotlaunch-on-stop" ||
		die "installing the cloud scripts failed"
	is_dry || head=$(git -C "$SRC_DIR" rev-parse HEAD)
	printf '%s\n' "${head:-<commit>}" | write_file "$PREFIX/share/spottrain/built-commit" 0644
}

# install_ssh_key FILE: the fleet's shared key pair for mpirun's ssh, trusted by
# every node; host keys are not pinned inside the fleet's private address ranges
# (replacement spot instances come with new host keys, often on old addresses).
install_ssh_key() {
	local key=$1 home
	home=$(getent passwd "$SPOTTRAIN_USER" | cut -d: -f6)
	[ -n "$home" ] || home=/home/$SPOTTRAIN_USER
	run install -d -m 0700 -o "$SPOTTRAIN_USER" -g "$SPOTTRAIN_USER" "$home/.ssh" || die "cannot create $home/.ssh"
	run install -m 0600 -o "$SPOTTRAIN_USER" -g "$SPOTTRAIN_USER" "$key" "$home/.ssh/id_spottrain" ||
		die "cannot install the ssh key"
	if is_dry; then
		run sh -c "ssh-keygen -y -f $home/.ssh/id_spottrain > $home/.ssh/id_spottrain.pub"
		run sh -c "cat $home/.ssh/id_spottrain.pub >> $home/.ssh/authorized_keys"
	else
		ssh-keygen -y -f "$home/.ssh/id_spottrain" >"$home/.ssh/id_spottrain.pub" ||
			die "the ssh key from $SSH_KEY_SOURCE is not a private key"
		touch "$home/.ssh/authorized_keys"
		grep -qxF "$(cat "$home/.ssh/id_spottrain.pub")" "$home/.ssh/authorized_keys" ||
			cat "$home/.ssh/id_spottrain.pub" >>"$home/.ssh/authorized_keys"
		chown "$SPOTTRAIN_USER:$SPOTTRAIN_USER" "$home/.ssh/id_spottrain.pub" "$home/.ssh/authorized_keys"
		chmod 0600 "$home/.ssh/authorized_keys"
	fi
	write_file "$home/.ssh/config" 0600 <<EOF
# written by $BOOT_PROG: mpirun's ssh inside the fleet
Host $SSH_HOST_PATTERNS
    IdentityFile ~/.ssh/id_spottrain
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    ConnectTimeout 10
    ServerAliveInterval 15
    ServerAliveCountMax 4
EOF
	run chown "$SPOTTRAIN_USER:$SPOTTRAIN_USER" "$home/.ssh/config"
}

# mpi_params: Open MPI's TCP traffic on the fleet's network only (MPI_IF_INCLUDE,
# e.g. the VPC CIDR), never on docker0 or other local bridges, which stall jobs.
mpi_params() {
	local home
	[ -n "$MPI_IF_INCLUDE" ] || return 0
	home=$(getent passwd "$SPOTTRAIN_USER" | cut -d: -f6)
	[ -n "$home" ] || home=/home/$SPOTTRAIN_USER
	run install -d -m 0755 -o "$SPOTTRAIN_USER" -g "$SPOTTRAIN_USER" "$home/.openmpi" ||
		die "cannot create $home/.openmpi"
	write_file "$home/.openmpi/mca-params.conf" 0644 <<EOF
# written by $BOOT_PROG: MPI traffic on the fleet's network only
btl_tcp_if_include = $MPI_IF_INCLUDE
oob_tcp_if_include = $MPI_IF_INCLUDE
EOF
	run chown "$SPOTTRAIN_USER:$SPOTTRAIN_USER" "$home/.openmpi/mca-params.conf"
}

# install_unit NAME: a systemd unit from the checkout, tied to the volume's
# mount (a drop-in: the unit never starts on the root disk's empty directory),
# enabled (it starts at every boot) and started.
install_unit() {
	run install -m 0644 "$SRC_DIR/configs/cloud/systemd/$1" "/etc/systemd/system/$1" || die "cannot install $1"
	write_file "/etc/systemd/system/$1.d/volume.conf" 0644 <<EOF
# written by $BOOT_PROG
[Unit]
RequiresMountsFor=$MOUNT_POINT
EOF
	run systemctl daemon-reload
	run systemctl enable --now "$1" || die "systemctl enable --now $1 failed"
}

# single_node_env: settings of spottrain-single.service (the one-VM case)
single_node_env() {
	write_file /etc/spottrain/single.env 0644 <<EOF
# written by $BOOT_PROG; read by spottrain-single.service (spottrain-single-run)
SPOTTRAIN_RUN_DIR="$MOUNT_POINT/$RUN_NAME"
SPOTTRAIN_CONFIG="$SPOTTRAIN_CONFIG"
SPOTTRAIN_TRAIN_ARGS="$SPOTTRAIN_TRAIN_ARGS"
SPOTTRAIN_NP="$SPOTTRAIN_NP"
SPOTTRAIN_USER="$SPOTTRAIN_USER"
DONE_ACTION="$DONE_ACTION"
EOF
}

# launcher_env DISCOVER_COMMAND: settings of spotlaunch.service
launcher_env() {
	write_file /etc/spottrain/spotlaunch.env 0644 <<EOF
# written by $BOOT_PROG; read by spotlaunch.service. The discovery command is
# split on whitespace and run without a shell, every second.
SPOTTRAIN_RUN_DIR="$MOUNT_POINT/$RUN_NAME"
SPOTLAUNCH_DISCOVER="$1"
SPOTLAUNCH_ARGS="--min-np $MIN_NP --max-np $MAX_NP --max-failures $MAX_FAILURES $SPOTLAUNCH_EXTRA_ARGS"
SPOTTRAIN_TRAIN_ARGS="--config $SPOTTRAIN_CONFIG $SPOTTRAIN_TRAIN_ARGS"
FLEET_DONE_COMMAND="$FLEET_DONE_COMMAND"
EOF
}
# <<< spottrain boot common
# >>> spottrain boot aws: keep byte-identical in aws-user-data-worker.sh and
# aws-user-data-launcher.sh (tests/cloud checks it)

# imds PATH: one IMDSv2 read (token, then GET). Dry runs never touch the network
# unless IMDS_URL is set: they print a placeholder.
imds() {
	local tok
	if is_dry && [ -z "${IMDS_URL:-}" ]; then
		printf 'DRYRUN-%s\n' "${1##*/}"
		return 0
	fi
	tok=$(curl -fsS -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
		"${IMDS_URL:-http://169.254.169.254}/latest/api/token") || return 1
	curl -fsS -m 5 -H "X-aws-ec2-metadata-token: $tok" "${IMDS_URL:-http://169.254.169.254}/latest/$1"
}

# ensure_aws_cli: the aws CLI (on AWS images it is there; Debian has the
# awscli package; else AWS's own installer of CLI v2)
ensure_aws_cli() {
	command -v aws >/dev/null 2>&1 && return 0
	if apt-cache show awscli >/dev/null 2>&1; then
		install_packages awscli
		return 0
	fi
	install_packages unzip
	if ! { run curl -fsSL -o /tmp/awscliv2.zip "https://awscli.amazonaws.com/awscli-exe-linux-$(uname -m).zip" &&
		run unzip -q -o /tmp/awscliv2.zip -d /tmp/awscliv2 && run /tmp/awscliv2/aws/install --update; }; then
		die "cannot install the aws CLI"
	fi
}

aws_facts() {
	INSTANCE_ID=${INSTANCE_ID:-$(imds meta-data/instance-id)} || die "cannot read the instance id from IMDS"
	AZ=${AZ:-$(imds meta-data/placement/availability-zone)} || die "cannot read the availability zone from IMDS"
	AWS_REGION=${AWS_REGION:-$(imds meta-data/placement/region)} || die "cannot read the region from IMDS"
	export AWS_REGION AWS_DEFAULT_REGION=$AWS_REGION AWS_PAGER=""
	log "instance $INSTANCE_ID in $AZ ($AWS_REGION)"
}

# attach_ebs: attach EBS_VOLUME_ID, or the first available volume tagged
# EBS_POOL_TAG in this zone (one volume per node: checkpoint.scope = node), to
# this instance. Retries until DEVICE_WAIT_S: a volume whose previous instance
# was just reclaimed stays "in-use" for a while.
attach_ebs() {
	local deadline=$((SECONDS + DEVICE_WAIT_S)) vol owner cands
	while :; do
		if [ -n "$EBS_VOLUME_ID" ]; then
			cands=$EBS_VOLUME_ID
		else
			local q=(aws ec2 describe-volumes --filters "Name=tag:${EBS_POOL_TAG%%=*},Values=${EBS_POOL_TAG#*=}"
				"Name=availability-zone,Values=$AZ" "Name=status,Values=available"
				--query 'Volumes[].VolumeId' --output text)
			if is_dry; then
				run "${q[@]}"
				cands="vol-DRYRUN"
			else
				cands=$("${q[@]}") || cands=""
			fi
		fi
		for vol in $cands; do
			owner=""
			is_dry || owner=$(aws ec2 describe-volumes --volume-ids "$vol" \
				--query 'Volumes[0].Attachments[0].InstanceId' --output text 2>/dev/null) || owner=""
			if [ "$owner" = "$INSTANCE_ID" ]; then
				log "$vol is already attached to this instance"
				EBS_VOLUME_ID=$vol
				return 0
			fi
			if run aws ec2 attach-volume --volume-id "$vol" --instance-id "$INSTANCE_ID" --device "$EBS_DEVICE"; then
				log "attached $vol as $EBS_DEVICE"
				EBS_VOLUME_ID=$vol
				return 0
			fi
		done
		[ "$SECONDS" -lt "$deadline" ] ||
			die "could not attach ${EBS_VOLUME_ID:-a volume tagged $EBS_POOL_TAG in $AZ} within $DEVICE_WAIT_S s"
		log "no volume could be attached yet; retrying in 10 s"
		sleep 10
	done
}

# lookup_volume: the id of the EBS volume attached here as EBS_DEVICE (an
# Elastigroup or a launch template attached it): on Nitro instances only the
# by-id link of the volume id names the device reliably.
lookup_volume() {
	local deadline=$((SECONDS + DEVICE_WAIT_S)) q vol
	q=(aws ec2 describe-volumes --filters "Name=attachment.instance-id,Values=$INSTANCE_ID"
		"Name=attachment.device,Values=$EBS_DEVICE" --query 'Volumes[0].VolumeId' --output text)
	if is_dry; then
		run "${q[@]}"
		return 0
	fi
	while :; do
		vol=$("${q[@]}" 2>/dev/null) || vol=""
		if [[ "$vol" == vol-* ]]; then
			log "$EBS_DEVICE is $vol"
			EBS_VOLUME_ID=$vol
			return 0
		fi
		[ "$SECONDS" -lt "$deadline" ] || {
			log "no volume found attached as $EBS_DEVICE (ec2:DescribeVolumes); trying the device names"
			return 0
		}
		sleep 5
	done
}

# setup_volume: EBS (by volume id: NVMe by-id link, else the Xen/sd name), EFS or NFS.
setup_volume() {
	local letter cands=()
	case "$VOLUME_KIND" in
	ebs)
		if [ "$EBS_ATTACH" = 1 ]; then
			attach_ebs
		elif [ -z "$EBS_VOLUME_ID" ] && [ -n "$EBS_DEVICE" ]; then
			lookup_volume
		fi
		[ -z "$EBS_VOLUME_ID" ] ||
			cands+=("$DEV_DIR/disk/by-id/nvme-Amazon_Elastic_Block_Store_${EBS_VOLUME_ID//-/}")
		if [ -n "$EBS_DEVICE" ]; then
			letter=${EBS_DEVICE##*/}
			letter=${letter#sd}
			letter=${letter#xvd}
			cands+=("$DEV_DIR/xvd$letter" "$DEV_DIR/sd$letter")
		fi
		[ ${#cands[@]} -gt 0 ] || die "VOLUME_KIND=ebs needs EBS_VOLUME_ID (NVMe instances) or EBS_DEVICE"
		mount_block_volume "$DEVICE_WAIT_S" "${cands[@]}"
		;;
	efs)
		[ -n "$EFS_ID" ] || die "VOLUME_KIND=efs needs EFS_ID (fs-...)"
		mount_nfs "$EFS_ID.efs.$AWS_REGION.amazonaws.com:/" nfs4 \
			"nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport"
		;;
	nfs)
		[ -n "$NFS_SOURCE" ] || die "VOLUME_KIND=nfs needs NFS_SOURCE (server:/export)"
		mount_nfs "$NFS_SOURCE" nfs "$NFS_OPTIONS"
		;;
	none) log "VOLUME_KIND=none: $MOUNT_POINT is a plain directory on the root disk" && run mkdir -p "$MOUNT_POINT" ;;
	*) die "VOLUME_KIND must be ebs, efs, nfs or none, not '$VOLUME_KIND'" ;;
	esac
	own_mount_point
}

# fetch_ssh_key: the fleet's private key from SSM Parameter Store (SecureString)
# or Secrets Manager, through the instance role; never stored in this file.
fetch_ssh_key() {
	local tmp rc=0 get
	case "$SSH_KEY_SOURCE" in
	none | "") log "SSH_KEY_SOURCE=none: no ssh trust set up"; return 0 ;;
	ssm:*) get=(aws ssm get-parameter --name "${SSH_KEY_SOURCE#ssm:}" --with-decryption
		--query Parameter.Value --output text) ;;
	secretsmanager:*) get=(aws secretsmanager get-secret-value --secret-id "${SSH_KEY_SOURCE#secretsmanager:}"
		--query SecretString --output text) ;;
	*) die "SSH_KEY_SOURCE must be ssm:NAME, secretsmanager:ID or none, not '$SSH_KEY_SOURCE'" ;;
	esac
	if is_dry; then
		run "${get[@]}"
		install_ssh_key /run/spottrain-key.DRYRUN
		return 0
	fi
	tmp=$(umask 077 && mktemp /run/spottrain-key.XXXXXX) || die "mktemp in /run failed"
	"${get[@]}" >"$tmp" || rc=$?
	if [ $rc -ne 0 ] || [ ! -s "$tmp" ]; then
		rm -f "$tmp"
		die "cannot read the ssh key $SSH_KEY_SOURCE (does the instance role allow it?)"
	fi
	install_ssh_key "$tmp"
	rm -f "$tmp"
}

# signal_ready: tell the launcher's discovery that this node can take ranks: a
# tag READY_TAG=SPOTTRAIN_REF (spot-discover-aws --tag), and/or completing the
# Auto Scaling launch lifecycle hook (the instance then becomes InService).
signal_ready() {
	if [ -n "$READY_TAG" ]; then
		run aws ec2 create-tags --resources "$INSTANCE_ID" --tags "Key=$READY_TAG,Value=$SPOTTRAIN_REF" ||
			die "cannot tag $INSTANCE_ID $READY_TAG=$SPOTTRAIN_REF (ec2:CreateTags on itself)"
	fi
	if [ -n "$LIFECYCLE_HOOK" ]; then
		[ -n "$ASG_NAME" ] || die "LIFECYCLE_HOOK needs ASG_NAME"
		run aws autoscaling complete-lifecycle-action --lifecycle-hook-name "$LIFECYCLE_HOOK" \
			--auto-scaling-group-name "$ASG_NAME" --instance-id "$INSTANCE_ID" \
			--lifecycle-action-result CONTINUE || die "complete-lifecycle-action failed"
	fi
	log "ready: spottrain $SPOTTRAIN_REF on $INSTANCE_ID"
}
# <<< spottrain boot aws

main() {
	boot_parse_args "$@"
	case "$ROLE" in worker | single) ;; *) die "ROLE must be worker or single, not '$ROLE'" ;; esac
	local pkgs=(ca-certificates curl git python3 openssh-server openssh-client)
	case "$VOLUME_KIND" in efs | nfs) pkgs+=(nfs-common) ;; esac
	install_packages "${pkgs[@]}"
	ensure_aws_cli
	aws_facts
	ensure_user
	setup_volume
	checkout_and_build
	if [ "$ROLE" = single ]; then
		single_node_env
		install_unit spottrain-single.service
	else
		fetch_ssh_key
		mpi_params
		signal_ready
	fi
	log "done"
}

# BOOT_SOURCE_ONLY=1: define the functions only (tests/cloud/test_boot_functions.sh)
if [ "${BOOT_SOURCE_ONLY:-0}" != 1 ]; then
	main "$@"
fi
