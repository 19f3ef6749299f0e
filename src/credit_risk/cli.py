"""The ``credit-risk`` command: one subcommand per step of the lifecycle.

Each subcommand lives in ``credit_risk.commands.<name>`` and exposes
``register(subparsers)``; the function it sets as ``handler`` returns the exit
code. Errors the library raises on purpose become one readable line and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from credit_risk import __version__
from credit_risk.errors import CreditRiskError
from credit_risk.settings import ENV_PREFIX

# Order of appearance in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "generate_data",
    "features",
    "load",
    "store",
    "train",
    "registry",
    "pipeline",
    "release",
    "serve",
    "decisions",
    "probe",
    "batch_score",
    "simulate_traffic",
    "monitor",
    "openapi",
    "env",
    "dr",
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="credit-risk",
        description="Real-time credit-risk scoring: data, features, store, model, API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"credit_risk.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CreditRiskError as exc:
        print(f"credit-risk {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        # Unreadable input, unwritable output, a full disk: the user can fix these.
        print(f"credit-risk {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ValidationError as exc:
        # Only settings read from the environment get here: commands turn their
        # own arguments' validation errors into InvalidInputError.
        print(f"credit-risk {args.command}: error: {describe_settings_error(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (BotoCoreError, ClientError, Boto3Error) as exc:
        # No credentials, access denied, no such bucket, a failed upload: AWS says
        # what is wrong.
        print(f"credit-risk {args.command}: error: AWS: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"credit-risk {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def describe_settings_error(exc: ValidationError) -> str:
    """``invalid configuration: CREDIT_RISK_X: <why>; …`` for a settings model's errors."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        name = f"{ENV_PREFIX}{field.upper()}" if field else exc.title
        problems.append(f"{name}: {error['msg']}")
    return "invalid configuration: " + "; ".join(problems)


if __name__ == "__main__":
    sys.exit(main())
