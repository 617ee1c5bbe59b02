#!/bin/bash
# rsh_shim_imds.sh - the fleet's rsh agent (tests/fleet/rsh_shim.sh) plus a metadata
# service of each fake node's own: when $SIM_ROOT/nodes/HOST/metadata_url exists, the
# node's processes get SPOTTRAIN_METADATA_URL from it (src/common/contract.h), so a mock
# metadata service (tests/mock_imds) stands for that node's cloud metadata endpoint.
args=("$@")
while [[ $# -gt 0 && "$1" == -* ]]; do shift; done
host="$1"
url_file="${SIM_ROOT:-/nonexistent}/nodes/$host/metadata_url"
if [[ -n "$host" && -s "$url_file" ]]; then
	SPOTTRAIN_METADATA_URL="$(cat "$url_file")"
	export SPOTTRAIN_METADATA_URL
fi
exec "$(dirname "$0")/../fleet/rsh_shim.sh" "${args[@]}"
