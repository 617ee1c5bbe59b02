#!/usr/bin/env bash
# gcp-startup-worker.sh - GCE startup script for spottrain on Spot VMs:
#   ROLE=worker    a VM of the workers' managed instance group (default)
#   ROLE=single    one Spot VM that trains alone (spottrain-single.service)
#   ROLE=launcher  the small standard (not Spot) VM that runs spotlaunch.service
#                  with spot-discover-gcp
#
# GCE runs startup scripts at EVERY boot; every step checks first, so a restart
# after a preemption (a Spot VM is stopped, then started again by the MIG) only
# waits for and mounts the volume. The steps: packages; the `spottrain` user (same
# uid everywhere); the data volume: a persistent disk found by its device name
# (/dev/disk/by-id/google-NAME; formatted ONLY when blank) or a Filestore / NFS
# share; SPOTTRAIN_REF (tag or commit) checked out and built; the fleet's ssh key
# from Secret Manager; then a readiness label (workers) or the systemd unit.
#
# Use: edit the settings below, then
#   gcloud compute instance-templates create ... --metadata-from-file startup-script=gcp-startup-worker.sh
# Credentials: only the VM's service account. Try it with --dry-run / DRY_RUN=1.
set -uo pipefail

# ---- settings (edit, or set the same names in the environment) ----
: "${ROLE:=worker}"                 # worker | single | launcher
: "${SPOTTRAIN_REPO:=https://github.com/your-org/spottrain.git}"
: "${SPOTTRAIN_REF:=v0.1.0}"        # git tag or full commit id: the version every node runs
: "${SPOTTRAIN_COMMIT:=}"           # optional: the commit SPOTTRAIN_REF must resolve to
: "${SPOTTRAIN_CUDA:=AUTO}"         # ON | OFF | AUTO
: "${SPOTTRAIN_USER:=spottrain}"
: "${SPOTTRAIN_UID:=2001}"
: "${VOLUME_KIND:=pd}"              # pd | nfs | none
: "${PD_DEVICE_NAME:=spottrain-data}"  # --disk=...,device-name=THIS (or attach-disk --device-name)
: "${PD_ATTACH:=0}"                 # 1: attach PD_DISK_NAME to this VM here (single-VM case)
: "${PD_DISK_NAME:=}"
: "${NFS_SOURCE:=}"                 # Filestore: 10.x.y.z:/share
: "${NFS_OPTIONS:=vers=3,hard,timeo=600,retrans=3}"
: "${MOUNT_POINT:=/mnt/spottrain}"  # the same path on every node and on the launcher
: "${FS_TYPE:=ext4}" "${FS_LABEL:=spottrain}" "${DEVICE_WAIT_S:=300}"
: "${SSH_KEY_SOURCE=gcp-secret:spottrain-mpi-ssh-key}"  # gcp-secret:NAME | none
: "${SSH_HOST_PATTERNS:=10.* 172.* 192.168.*}"
: "${MPI_IF_INCLUDE:=}"            # Open MPI TCP networks, e.g. the VPC CIDR 10.0.0.0/16 ("" = all)
: "${READY_LABEL=spottrain-ready}"  # worker: label set when ready ("" = none)
# ROLE=single and ROLE=launcher:
: "${RUN_NAME:=mnist_cnn}"
: "${SPOTTRAIN_CONFIG:=/opt/spottrain/src/configs/mnist_cnn.ini}"
: "${SPOTTRAIN_TRAIN_ARGS:=}"
# ROLE=single:
: "${SPOTTRAIN_NP:=1}" "${DONE_ACTION:=none}"   # none | poweroff
# ROLE=launcher:
: "${WORKER_MIG:=spottrain-workers}"
: "${WORKER_ZONE:=}" "${WORKER_REGION:=}"       # zonal or regional group (default: this VM's zone)
: "${WORKER_SLOTS:=}"
: "${DISCOVER_COMMAND:=}"
: "${MIN_NP:=2}" "${MAX_NP:=16}" "${MAX_FAILURES:=20}" "${SPOTLAUNCH_EXTRA_ARGS:=}"
: "${SCALE_TO_ZERO_WHEN_DONE:=1}" "${FLEET_DONE_COMMAND:=}"
# ---- rarely changed ----
: "${SRC_DIR:=/opt/spottrain/src}" "${BUILD_DIR:=/opt/spottrain/build}" "${PREFIX:=/usr/local}"
: "${DEV_DIR:=/dev}" "${FSTAB:=/etc/fstab}" "${DEVICE_POLL_S:=2}" "${NFS_TRIES:=30}"
: "${DRY_RUN:=0}"
BOOT_PROG=gcp-startup-worker

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
# >>> spottrain boot gcp

# gce_md PATH: one read from the metadata server. Dry runs never touch the
# network unless METADATA_URL is set: they print a placeholder.
gce_md() {
	if is_dry && [ -z "${METADATA_URL:-}" ]; then
		printf 'DRYRUN-%s\n' "${1##*/}"
		return 0
	fi
	curl -fsS -m 5 -H 'Metadata-Flavor: Google' \
		"${METADATA_URL:-http://metadata.google.internal}/computeMetadata/v1/$1"
}

gcp_facts() {
	local z
	INSTANCE_NAME=${INSTANCE_NAME:-$(gce_md instance/name)} || die "cannot read the instance name from the metadata server"
	z=${ZONE:-$(gce_md instance/zone)} || die "cannot read the zone from the metadata server"
	ZONE=${z##*/}
	PROJECT=${PROJECT:-$(gce_md project/project-id)} || die "cannot read the project from the metadata server"
	log "instance $INSTANCE_NAME in $ZONE (project $PROJECT)"
}

# label_value TEXT: TEXT as a GCE label value (lowercase, digits, - and _; 63 chars)
label_value() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9_-' '-' | cut -c1-63; }

# attach_pd: attach the persistent disk PD_DISK_NAME as PD_DEVICE_NAME, retrying
# until DEVICE_WAIT_S while the VM that had it (preempted, being deleted) lets go.
attach_pd() {
	local deadline=$((SECONDS + DEVICE_WAIT_S)) users=""
	is_dry || users=$(gcloud compute disks describe "$PD_DISK_NAME" --zone "$ZONE" --project "$PROJECT" \
		--format 'value(users)' 2>/dev/null) || users=""
	case "$users;" in *"/instances/$INSTANCE_NAME;"*)
		log "$PD_DISK_NAME is already attached to this VM"
		return 0
		;;
	esac
	until run gcloud compute instances attach-disk "$INSTANCE_NAME" --disk "$PD_DISK_NAME" \
		--device-name "$PD_DEVICE_NAME" --zone "$ZONE" --project "$PROJECT"; do
		[ "$SECONDS" -lt "$deadline" ] || die "could not attach the disk $PD_DISK_NAME within $DEVICE_WAIT_S s"
		log "attaching $PD_DISK_NAME failed (still attached elsewhere?); retrying in 10 s"
		sleep 10
	done
}

# setup_volume: a persistent disk (by its device name: /dev/disk/by-id/google-NAME)
# or an NFS share (Filestore).
setup_volume() {
	case "$VOLUME_KIND" in
	pd)
		[ "$PD_ATTACH" != 1 ] || attach_pd
		mount_block_volume "$DEVICE_WAIT_S" "$DEV_DIR/disk/by-id/google-$PD_DEVICE_NAME"
		;;
	nfs)
		[ -n "$NFS_SOURCE" ] || die "VOLUME_KIND=nfs needs NFS_SOURCE (Filestore: 10.x.y.z:/share)"
		mount_nfs "$NFS_SOURCE" nfs "$NFS_OPTIONS"
		;;
	none) log "VOLUME_KIND=none: $MOUNT_POINT is a plain directory on the boot disk" && run mkdir -p "$MOUNT_POINT" ;;
	*) die "VOLUME_KIND must be pd, nfs or none, not '$VOLUME_KIND'" ;;
	esac
	own_mount_point
}

# fetch_ssh_key: the fleet's private key from Secret Manager, through the VM's
# service account (roles/secretmanager.secretAccessor on that secret).
fetch_ssh_key() {
	local tmp rc=0 get
	case "$SSH_KEY_SOURCE" in
	none | "") log "SSH_KEY_SOURCE=none: no ssh trust set up"; return 0 ;;
	gcp-secret:*) get=(gcloud secrets versions access latest --secret "${SSH_KEY_SOURCE#gcp-secret:}"
		--project "$PROJECT") ;;
	*) die "SSH_KEY_SOURCE must be gcp-secret:NAME or none, not '$SSH_KEY_SOURCE'" ;;
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
		die "cannot read the ssh key $SSH_KEY_SOURCE (does the service account have secretAccessor?)"
	fi
	install_ssh_key "$tmp"
	rm -f "$tmp"
}

# signal_ready: label this VM READY_LABEL=<SPOTTRAIN_REF as a label value>;
# the launcher lists only such VMs (spot-discover-gcp --label).
signal_ready() {
	[ -n "$READY_LABEL" ] || return 0
	run gcloud compute instances add-labels "$INSTANCE_NAME" --zone "$ZONE" --project "$PROJECT" \
		--labels "$READY_LABEL=$(label_value "$SPOTTRAIN_REF")" ||
		die "cannot label $INSTANCE_NAME (compute.instances.setLabels)"
	log "ready: spottrain $SPOTTRAIN_REF on $INSTANCE_NAME"
}
# <<< spottrain boot gcp

discover_command() {
	local scope cmd
	if [ -n "$DISCOVER_COMMAND" ]; then
		printf '%s\n' "$DISCOVER_COMMAND"
		return 0
	fi
	if [ -n "$WORKER_REGION" ]; then scope="--region $WORKER_REGION"; else scope="--zone ${WORKER_ZONE:-$ZONE}"; fi
	cmd="$PREFIX/bin/spot-discover-gcp --group $WORKER_MIG $scope --project $PROJECT --cache-ttl 10"
	[ -z "$READY_LABEL" ] || cmd+=" --label $READY_LABEL=$(label_value "$SPOTTRAIN_REF")"
	[ -z "$WORKER_SLOTS" ] || cmd+=" --slots $WORKER_SLOTS"
	printf '%s\n' "$cmd"
}

main() {
	local pkgs=(ca-certificates curl git python3 openssh-client) scope
	boot_parse_args "$@"
	case "$ROLE" in worker | single | launcher) ;; *) die "ROLE must be worker, single or launcher, not '$ROLE'" ;; esac
	[ "$ROLE" = launcher ] || pkgs+=(openssh-server)
	[ "$VOLUME_KIND" != nfs ] || pkgs+=(nfs-common)
	install_packages "${pkgs[@]}"
	command -v gcloud >/dev/null 2>&1 || is_dry ||
		die "gcloud is missing: use a GCE image with the Google Cloud CLI (Debian, Ubuntu, Deep Learning VM)"
	gcp_facts
	ensure_user
	setup_volume
	checkout_and_build
	case "$ROLE" in
	single)
		single_node_env
		install_unit spottrain-single.service
		;;
	launcher)
		fetch_ssh_key
		mpi_params
		if [ -z "$FLEET_DONE_COMMAND" ] && [ "$SCALE_TO_ZERO_WHEN_DONE" = 1 ] && [ -z "$DISCOVER_COMMAND" ]; then
			if [ -n "$WORKER_REGION" ]; then scope="--region $WORKER_REGION"; else scope="--zone ${WORKER_ZONE:-$ZONE}"; fi
			FLEET_DONE_COMMAND="gcloud compute instance-groups managed resize $WORKER_MIG --size 0 $scope --project $PROJECT"
		fi
		launcher_env "$(discover_command)"
		install_unit spotlaunch.service
		;;
	*)
		fetch_ssh_key
		mpi_params
		signal_ready
		;;
	esac
	log "done"
}

# BOOT_SOURCE_ONLY=1: define the functions only (tests/cloud/test_boot_functions.sh)
if [ "${BOOT_SOURCE_ONLY:-0}" != 1 ]; then
	main "$@"
fi
