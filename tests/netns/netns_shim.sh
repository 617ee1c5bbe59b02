#!/bin/bash
# netns_shim.sh - Open MPI's plm_rsh_agent for the network-namespace fleet (tests/netns).
# mpirun calls it like ssh: [options...] HOST COMMAND...; it runs COMMAND in HOST's network
# namespace ($NETNS_PREFIX-HOST, made by netns.py) with a UTS namespace of its own whose host
# name is HOST, its own TMPDIR (session directory) and SIM_NODE=HOST. Needs root, NETNS_PREFIX
# and NETNS_ROOT in the environment (mpirun passes its environment on).
while [[ $# -gt 0 && "$1" == -* ]]; do shift; done
host="$1"
shift
if [[ -z "${NETNS_PREFIX:-}" || -z "${NETNS_ROOT:-}" || ! "$host" =~ ^[a-z0-9]+$ ]]; then
	echo "netns_shim: NETNS_PREFIX, NETNS_ROOT and a plain host name are needed" >&2
	exit 255
fi
ns="$NETNS_PREFIX-$host"
if [[ ! -e "/run/netns/$ns" ]]; then
	echo "ssh: Could not resolve hostname $host: no namespace $ns" >&2
	exit 255
fi
export SIM_NODE="$host"
export TMPDIR="$NETNS_ROOT/nodes/$host/tmp"
mkdir -p "$TMPDIR"
# the host name is set inside the new UTS namespace only; $0 and $1 of the inner shell
exec ip netns exec "$ns" unshare --uts /bin/sh -c 'echo "$0" > /proc/sys/kernel/hostname && exec /bin/sh -c "$1"' "$host" "$*"
