"""``neural-distill plan CONFIG [--json]`` on the command line."""

import json

from neural_distill.plan.build import make_plan, plan_lines


def run_plan(args, config):
    result = make_plan(config, args.config)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print("\n".join(plan_lines(result)))
    return 0
