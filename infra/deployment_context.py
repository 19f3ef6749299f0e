"""``cdk synth`` context options of a deployment named ``[<market>-]<env>[-standby]``.

    python3 infra/deployment_context.py mx-prod-standby
    -c env=prod -c market=mx -c region=standby

The Makefile's synth of several deployments spells them this way; standard library
only, as it runs before any environment exists.
"""

from __future__ import annotations

import sys

ENVIRONMENTS = ("dev", "staging", "prod")


def context_options(deployment: str) -> list[str]:
    parts = deployment.split("-")
    standby = parts[-1] == "standby"
    if standby:
        parts = parts[:-1]
    if not parts or parts[-1] not in ENVIRONMENTS or len(parts) > 2:
        raise ValueError(f"not a deployment: {deployment!r} ([<market>-]<env>[-standby])")
    options = ["-c", f"env={parts[-1]}"]
    if len(parts) == 2:
        options += ["-c", f"market={parts[0]}"]
    if standby:
        options += ["-c", "region=standby"]
    return options


def main(argv: list[str]) -> int:
    try:
        (deployment,) = argv
        print(" ".join(context_options(deployment)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
