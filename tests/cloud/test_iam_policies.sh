#!/usr/bin/env bash
# The IAM policies are valid JSON and allow every AWS API call the kit makes:
# each `aws SERVICE OPERATION` in configs/cloud maps to SERVICE:Operation, and
# the launcher's and the workers' own calls are in their own policy.
. "$(dirname "$0")/lib.sh"
W=$CLOUD/aws-iam-worker-policy.json
L=$CLOUD/aws-iam-launcher-policy.json
for p in "$W" "$L"; do
	check "$(basename "$p") is valid JSON" python3 -m json.tool "$p" >/dev/null
done

actions() { # actions POLICY: the allowed actions, one a line
	python3 -c '
import json, sys
for st in json.load(open(sys.argv[1]))["Statement"]:
    if st.get("Effect") == "Allow":
        a = st["Action"]
        for x in ([a] if isinstance(a, str) else a):
            print(x)' "$1"
}
actions "$W" >"$WORK/worker.actions"
actions "$L" >"$WORK/launcher.actions"
cat "$WORK/worker.actions" "$WORK/launcher.actions" >"$WORK/all.actions"

# every `aws SERVICE OPERATION` the kit's programs make (aws ... or aws_json OUT ...);
# the README's set-up commands are the user's, run with the user's own rights
for f in "$CLOUD"/*; do
	[ -f "$f" ] && head -n 1 "$f" | grep -q '^#!' && cat "$f"
done | grep -oE '(\baws|aws_json "[^"]*") (autoscaling|ec2|ssm|secretsmanager) [a-z-]+' |
	sed -E 's/^aws_json "[^"]*"/aws/' | sort -u >"$WORK/calls"
check "found the kit's AWS calls ($(wc -l <"$WORK/calls"))" test "$(wc -l <"$WORK/calls")" -ge 12
while read -r _ svc op; do
	action="$svc:$(python3 -c 'import sys; print("".join(w.capitalize() for w in sys.argv[1].split("-")))' "$op")"
	check "aws $svc $op is allowed ($action)" grep -qx "$action" "$WORK/all.actions"
done <"$WORK/calls"

for a in autoscaling:DescribeAutoScalingGroups ec2:DescribeInstances ec2:DescribeSpotFleetInstances \
	ec2:DescribeFleetInstances autoscaling:UpdateAutoScalingGroup ssm:GetParameter; do
	check "launcher policy: $a" grep -qx "$a" "$WORK/launcher.actions"
done
for a in ssm:GetParameter secretsmanager:GetSecretValue ec2:CreateTags autoscaling:CompleteLifecycleAction \
	ec2:AttachVolume ec2:DescribeVolumes ec2:CancelSpotInstanceRequests; do
	check "worker policy: $a" grep -qx "$a" "$WORK/worker.actions"
done
check "worker policy: CreateTags only for the readiness tag" grep -q '"aws:TagKeys": \["spottrain:ready"\]' "$W"
finish
