#!/bin/sh
# The workflow's steps as one script, to run the gate locally the way CI does:
#   sh examples/ci/run_gate.sh
set -e
CONFIG="$(dirname "$0")/distill.yaml"
WORKSPACE="${WORKSPACE:-ci_runs}"
neural-distill plan "$CONFIG"
neural-distill run "$CONFIG" --quiet --workspace "$WORKSPACE" | tee run.txt
RUN_FOLDER="$(sed -n 's/^run folder: //p' run.txt)"
neural-distill report "$RUN_FOLDER" --json \
  --require "agreement>=0.8" \
  --require "top1>=0.8*teacher.top1" \
  --require "kl<=0.5" \
  --require "parameters<=0.5*teacher.parameters" > gate.json
echo "gate passed: $RUN_FOLDER (figures and verdicts in gate.json)"
