#!/bin/bash
# rsh_shim.sh - Open MPI plm_rsh_agent for the fake-node fleet (TESTING.md).
# mpirun calls it like ssh: [options...] HOST COMMAND...; it runs COMMAND on
# this machine as if on HOST: SIM_NODE names the node, and each node gets its
# own TMPDIR (session directory) and vader backing directory.
# Needs SIM_ROOT in the environment (mpirun passes its environment on).
# Fault states set by fleet.py: $SIM_ROOT/nodes/HOST/down makes the node
# unreachable (like ssh to a dead host), .../frozen makes a launch on it hang
# (like ssh to a partitioned host) until the file goes away.
while [[ $# -gt 0 && "$1" == -* ]]; do shift; done
host="$1"
shift
if [[ -z "${SIM_ROOT:-}" || -z "$host" ]]; then
	echo "rsh_shim: SIM_ROOT and a host name are needed" >&2
	exit 255
fi
node="$SIM_ROOT/nodes/$host"
if [[ -e "$node/down" ]]; then
	echo "ssh: connect to host $host port 22: No route to host" >&2
	exit 255
fi
# like ssh to a partitioned host, a launch on a frozen node hangs for as long as it is
# frozen, even once the node is down: whoever started it must end it (spotlaunch kills
# the session of every mpirun it started, rsh agents included; fleet.frozen checks)
while [[ -e "$node/frozen" ]]; do sleep 0.5; done
if [[ -e "$node/down" ]]; then
	echo "ssh: connect to host $host port 22: Connection timed out" >&2
	exit 255
fi
export SIM_NODE="$host"
export TMPDIR="$node/tmp"
mkdir -p "$TMPDIR"
export OMPI_MCA_btl_vader_backing_directory="$TMPDIR"
exec /bin/sh -c "$*"
