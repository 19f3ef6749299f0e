"""``cdk synth`` context options of a deployment named ``[<market>-]<env>[-standby]``.

    python infra/deployment_context.py mx-prod-standby
    -c env=prod -c market=mx -c region=standby

The Makefile's synth of several deployments names them this way.
"""

from __future__ import annotations

import sys

from credit_risk.names import DR_STANDBY, cdk_context_options


def main(argv: list[str]) -> int:
    try:
        (name,) = argv
        deployment = name.removesuffix(f"-{DR_STANDBY}")
        print(" ".join(cdk_context_options(deployment, standby=deployment != name)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
