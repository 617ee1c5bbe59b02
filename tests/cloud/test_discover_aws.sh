#!/usr/bin/env bash
# spot-discover-aws against a fake `aws` serving recorded JSON: only running
# instances come out, as private-ip:slots, sorted by address; empty groups print
# nothing; every CLI failure has a clear message and its documented exit code.
. "$(dirname "$0")/lib.sh"
D=$CLOUD/spot-discover-aws
A=$FIX/aws

disc() { # disc SCENARIO ARGS...
	local s=$1
	shift
	: >"$FAKE_LOG"
	FAKE_AWS_DIR=$A/$s capture "$D" "$@"
}

# ---- Auto Scaling group: InService+Healthy in the ASG and running in EC2 ----
disc asg-mixed --asg spottrain-workers --region us-east-1
expect_rc "asg: mixed states" 0
expect_out "asg: running InService hosts, GPUs as slots, numeric address order" "10.0.0.99:1
10.0.1.25:4
10.0.2.7:1
10.0.10.3:8"
expect_nogrep "asg: pending instance left out" "$WORK/out" '10\.0\.1\.77'
expect_nogrep "asg: Terminating:Wait instance left out (EC2 still says running)" "$WORK/out" '10\.0\.1\.200'
expect_nogrep "asg: Unhealthy instance left out" "$WORK/out" '10\.0\.3\.9'
expect_nogrep "asg: shutting-down instance left out (ASG still says InService)" "$WORK/out" '10\.0\.1\.8:'
expect_grep "asg: describe-auto-scaling-groups asked for the group" "$FAKE_LOG" \
	'^aws \| --region \| us-east-1 \| autoscaling \| describe-auto-scaling-groups \| --auto-scaling-group-names \| spottrain-workers'
expect_grep "asg: describe-instances filtered by state running (JSON filters)" "$FAKE_LOG" \
	'describe-instances \| --filters \| \[\{"Name": "instance-state-name", "Values": \["running"\]\}'
expect_grep "asg: describe-instances filtered by the InService ids" "$FAKE_LOG" \
	'"Name": "instance-id", "Values": \["i-0aa00000000000001", "i-0aa00000000000002", "i-0aa00000000000006", "i-0aa00000000000007", "i-0aa00000000000008"\]'
check "asg: stderr is empty on success" test ! -s "$WORK/err"
check "asg: every line is host:slots" bash -c "! grep -Ev '^[0-9.]+:[1-9][0-9]*$' '$WORK/out'"

# the same fleet listed in another order by EC2 gives the same lines
mkdir -p "$WORK/asg-shuffled"
cp "$A/asg-mixed/describe-auto-scaling-groups.json" "$WORK/asg-shuffled/"
python3 - "$A/asg-mixed/describe-instances.json" "$WORK/asg-shuffled/describe-instances.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["Reservations"].reverse()
for r in d["Reservations"]:
    r["Instances"].reverse()
json.dump(d, open(sys.argv[2], "w"))
PY
first=$(cat "$WORK/out")
FAKE_AWS_DIR=$WORK/asg-shuffled capture "$D" --asg spottrain-workers
check "asg: stable order whatever the API's order" test "$(cat "$WORK/out")" = "$first"

disc asg-mixed --asg spottrain-workers --slots 2
expect_out "asg: --slots overrides the GPU table" "10.0.0.99:2
10.0.1.25:2
10.0.2.7:2
10.0.10.3:2"
disc asg-mixed --asg spottrain-workers --cpu-slots 2 --type-slots g5.12xlarge=2
expect_out "asg: --cpu-slots and --type-slots" "10.0.0.99:2
10.0.1.25:2
10.0.2.7:1
10.0.10.3:8"
disc asg-mixed --asg spottrain-workers --address private-dns
expect_out "asg: --address private-dns, still in address order" "ip-10-0-0-99.ec2.internal:1
ip-10-0-1-25.ec2.internal:4
ip-10-0-2-7.ec2.internal:1
ip-10-0-10-3.ec2.internal:8"
disc asg-mixed --asg spottrain-workers --tag spottrain:ready=v0.1.0
expect_grep "asg: --tag narrows the ASG (readiness tag filter)" "$FAKE_LOG" \
	'\{"Name": "tag:spottrain:ready", "Values": \["v0.1.0"\]\}'

disc asg-empty --asg spottrain-workers
expect_rc "asg: empty group" 0
check "asg: empty group prints nothing" test ! -s "$WORK/out"
expect_nogrep "asg: empty group makes no describe-instances call" "$FAKE_LOG" 'describe-instances'
disc asg-pending --asg spottrain-workers
expect_rc "asg: only pending instances" 0
check "asg: only pending instances prints nothing" test ! -s "$WORK/out"
disc asg-missing --asg spottrain-workerz
expect_rc "asg: no such group" 66
expect_grep "asg: no such group says so" "$WORK/err" "no Auto Scaling group named 'spottrain-workerz'"

# ---- Spot Fleet ----
disc spot-fleet --spot-fleet sfr-8a3c7e2b-64d1-4b9c-9f0a-1c2d3e4f5a6b
expect_rc "spot fleet" 0
expect_out "spot fleet: active, healthy, running instances" "172.31.5.10:4
172.31.40.2:1"
expect_grep "spot fleet: describe-spot-fleet-instances called" "$FAKE_LOG" \
	'describe-spot-fleet-instances \| --spot-fleet-request-id \| sfr-8a3c7e2b-64d1-4b9c-9f0a-1c2d3e4f5a6b'
disc spot-fleet-notfound --spot-fleet sfr-00000000-0000-0000-0000-000000000000
expect_rc "spot fleet: unknown id" 66
expect_grep "spot fleet: unknown id says so" "$WORK/err" 'InvalidSpotFleetRequestId.NotFound'

# EC2 Fleet: the same answer shape as a Spot Fleet's
mkdir -p "$WORK/ec2-fleet"
cp "$A/spot-fleet/describe-instances.json" "$WORK/ec2-fleet/"
cp "$A/spot-fleet/describe-spot-fleet-instances.json" "$WORK/ec2-fleet/describe-fleet-instances.json"
: >"$FAKE_LOG"
FAKE_AWS_DIR=$WORK/ec2-fleet capture "$D" --ec2-fleet fleet-8a3c7e2b-64d1-4b9c-9f0a-1c2d3e4f5a6b
expect_out "EC2 Fleet" "172.31.5.10:4
172.31.40.2:1"
expect_grep "EC2 Fleet: describe-fleet-instances called" "$FAKE_LOG" 'describe-fleet-instances \| --fleet-id \| fleet-8a3c7e2b'

# ---- Elastigroup / any tag ----
disc tag-mixed --tag spotinst:aws:ec2:group:id=sig-5f6e7d8c
expect_rc "tag: Elastigroup" 0
expect_out "tag: running instances only, sorted" "10.1.0.5:4
10.1.0.40:1
10.1.0.200:1"
expect_grep "tag: the tag becomes an EC2 filter" "$FAKE_LOG" \
	'\{"Name": "tag:spotinst:aws:ec2:group:id", "Values": \["sig-5f6e7d8c"\]\}'
expect_grep "tag: unknown GPU type warns on stderr" "$WORK/err" 'g9.xlarge is not in the GPU table'
disc tag-mixed --tag spotinst:aws:ec2:group:id=sig-5f6e7d8c --type-slots g9.xlarge=4
expect_grep "tag: --type-slots adds a type" "$WORK/out" '^10\.1\.0\.200:4$'
disc tag-empty --tag Project=nothing-here
expect_rc "tag: no instance" 0
check "tag: no instance prints nothing" test ! -s "$WORK/out"

# ---- failures of the CLI ----
disc throttle-ec2 --asg spottrain-workers
expect_rc "throttled DescribeInstances (RequestLimitExceeded, aws exit 254)" 75
expect_grep "throttled: the message names the cause and says it retries" "$WORK/err" 'throttled.*will retry.*RequestLimitExceeded'
check "throttled: prints no hosts" test ! -s "$WORK/out"
disc throttle-asg --asg spottrain-workers
expect_rc "throttled DescribeAutoScalingGroups (Throttling, aws exit 255)" 75
expect_grep "throttled asg: message" "$WORK/err" 'Rate exceeded'
disc unreachable --tag a=b
expect_rc "endpoint unreachable" 75
disc auth --tag a=b
expect_rc "UnauthorizedOperation" 77
expect_grep "UnauthorizedOperation: points at the IAM policy" "$WORK/err" 'aws-iam-launcher-policy.json'
disc no-credentials --tag a=b
expect_rc "no credentials" 77
disc no-region --tag a=b
expect_rc "no region" 64
expect_grep "no region: says --region" "$WORK/err" '--region'
disc bad-json --tag a=b
expect_rc "output that is not JSON" 65
disc odd-error --tag a=b
expect_rc "an unexpected CLI error" 69
expect_grep "unexpected error: the CLI's message is shown" "$WORK/err" 'InvalidParameterValue'
FAKE_AWS_SLEEP=5 disc tag-mixed --tag a=b --timeout 1
expect_rc "a hanging CLI call times out" 75
expect_grep "timeout: says so" "$WORK/err" 'no answer within --timeout 1 s'

# ---- the cache keeps API calls down ----
disc asg-mixed --asg spottrain-workers --cache-ttl 60
first=$(cat "$WORK/out")
disc throttle-asg --asg spottrain-workers --cache-ttl 60
expect_rc "cache: a second call within the TTL" 0
check "cache: same answer" test "$(cat "$WORK/out")" = "$first"
check "cache: no aws call" test ! -s "$FAKE_LOG"
disc throttle-asg --asg spottrain-workers --cache-ttl 60 --slots 2
expect_rc "cache: other arguments are another cache entry" 75

# ---- usage ----
for args in "" "--asg a --spot-fleet sfr-1" "--asg a --slots 0" "--asg a --slots x" "--tag novalue" \
	"--spot-fleet fleet-1" "--asg a --address public-ip" "--asg" "--bogus"; do
	# shellcheck disable=SC2086
	disc asg-mixed $args
	expect_rc "usage error: '$args'" 64
done
disc asg-mixed --help
expect_rc "--help" 0
expect_grep "--help: documents the exit codes" "$WORK/out" '75 transient'

# ---- the aws CLI missing ----
if ! PATH=/usr/bin:/bin command -v aws >/dev/null 2>&1; then
	mkdir -p "$WORK/bin"
	ln -s "$(command -v python3)" "$WORK/bin/python3"
	PATH="$WORK/bin:/usr/bin:/bin" capture "$D" --asg x
	expect_rc "no aws CLI" 69
	expect_grep "no aws CLI: says so" "$WORK/err" 'aws CLI is not installed'
else
	echo "skip [no aws CLI]: an aws CLI is installed in /usr/bin"
fi
finish
