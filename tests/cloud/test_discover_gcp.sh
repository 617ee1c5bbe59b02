#!/usr/bin/env bash
# spot-discover-gcp against a fake `gcloud` serving recorded JSON: RUNNING
# instances of the MIG that the MIG is not acting on, as internal-ip:slots
# (GPUs from guestAccelerators), sorted; errors classified like the AWS program.
. "$(dirname "$0")/lib.sh"
D=$CLOUD/spot-discover-gcp
G=$FIX/gcp

disc() {
	local s=$1
	shift
	: >"$FAKE_LOG"
	FAKE_GCLOUD_DIR=$G/$s capture "$D" "$@"
}

disc mig-mixed --group spottrain-workers --region us-central1 --project spottrain-demo
expect_rc "mig: mixed states" 0
expect_out "mig: RUNNING and NONE/VERIFYING only, GPUs as slots, address order" "10.128.0.3:1
10.128.0.9:4
10.128.0.12:1
10.128.0.100:2"
expect_nogrep "mig: instance being deleted left out" "$WORK/out" '10\.128\.0\.4:'
expect_nogrep "mig: STOPPING (preempted) instance left out" "$WORK/out" '10\.128\.0\.5:'
expect_nogrep "mig: VM outside the group left out" "$WORK/out" '10\.128\.0\.6:'
expect_grep "mig: list-instances of the regional group" "$FAKE_LOG" \
	'^gcloud \| compute \| instance-groups \| managed \| list-instances \| spottrain-workers \| --region \| us-central1 \| --project \| spottrain-demo \| --format \| json'
expect_grep "mig: one instances list over the members' zones, by name, RUNNING" "$FAKE_LOG" \
	'instances \| list \| --zones \| us-central1-a,us-central1-b \| --filter \| name=\( spottrain-workers-b9q1 spottrain-workers-e5p6 spottrain-workers-h8t9 spottrain-workers-x7k2 \) AND status=RUNNING'
check "mig: stderr empty on success" test ! -s "$WORK/err"

disc mig-mixed --group spottrain-workers --zone us-central1-a --label spottrain-ready=v0-1-0
expect_out "mig: --label keeps the VMs that are ready" "10.128.0.3:1
10.128.0.9:4
10.128.0.12:1"
expect_grep "mig: --label also filters server-side" "$FAKE_LOG" 'AND labels.spottrain-ready=v0-1-0'
disc mig-mixed --group spottrain-workers --zone us-central1-a --slots 3
expect_out "mig: --slots" "10.128.0.3:3
10.128.0.9:3
10.128.0.12:3
10.128.0.100:3"
disc mig-mixed --group spottrain-workers --zone us-central1-a --type-slots n1-standard-16=2 --cpu-slots 2
expect_out "mig: --type-slots beats guestAccelerators, --cpu-slots for CPU VMs" "10.128.0.3:2
10.128.0.9:2
10.128.0.12:1
10.128.0.100:2"
disc mig-mixed --group spottrain-workers --zone us-central1-a --address name
expect_grep "mig: --address name" "$WORK/out" '^spottrain-workers-h8t9:1$'

disc mig-empty --group spottrain-workers --zone us-central1-a
expect_rc "mig: empty group" 0
check "mig: empty group prints nothing" test ! -s "$WORK/out"
expect_nogrep "mig: empty group needs no instances list" "$FAKE_LOG" 'instances \| list'
disc mig-all-pending --group spottrain-workers --zone us-central1-a
expect_rc "mig: only instances being created" 0
check "mig: only instances being created prints nothing" test ! -s "$WORK/out"

disc mig-notfound --group nope --zone us-central1-a
expect_rc "mig: no such group" 66
expect_grep "mig: no such group says so" "$WORK/err" 'was not found'
disc quota --group spottrain-workers --zone us-central1-a
expect_rc "mig: rate quota exceeded" 75
expect_grep "mig: rate quota message" "$WORK/err" 'will retry.*Quota exceeded'
disc quota-list --group spottrain-workers --zone us-central1-a
expect_rc "mig: quota on the second call" 75
disc forbidden --group spottrain-workers --zone us-central1-a
expect_rc "mig: permission denied" 77
expect_grep "mig: permission message names the role" "$WORK/err" 'roles/compute.viewer'
disc bad-json --group spottrain-workers --zone us-central1-a
expect_rc "mig: output that is not JSON" 65
FAKE_GCLOUD_SLEEP=5 disc mig-mixed --group spottrain-workers --zone us-central1-a --timeout 1
expect_rc "mig: a hanging gcloud times out" 75

disc mig-mixed --group spottrain-workers --zone us-central1-a --cache-ttl 60
first=$(cat "$WORK/out")
disc quota --group spottrain-workers --zone us-central1-a --cache-ttl 60
expect_rc "cache: within the TTL" 0
check "cache: same answer, no gcloud call" test "$(cat "$WORK/out")" = "$first" -a ! -s "$FAKE_LOG"

for args in "" "--group g" "--group g --zone a --region b" "--group Bad_Name --zone z" \
	"--group g --zone z --slots 0" "--group g --zone z --label NoCaps=x" "--group g --zone z --what"; do
	# shellcheck disable=SC2086
	disc mig-mixed $args
	expect_rc "usage error: '$args'" 64
done
finish
