"""``credit-risk registry``: list, show and promote model versions."""

from __future__ import annotations

import argparse
import json

from credit_risk.registry import Registry
from credit_risk.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "registry",
        help="list, show and promote model versions",
        description="Inspect the model registry and choose the champion (the serving version).",
    )
    parser.add_argument(
        "--registry",
        default=None,
        help="registry root (directory or s3:// "
        "URI); default: CREDIT_RISK_REGISTRY_URI, else .local/registry",
    )
    parser.add_argument("--model-name", default=None, help="default: CREDIT_RISK_MODEL_NAME")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="versions, oldest first, with AUC and gate verdict")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="print a version's metadata (JSON)")
    show.add_argument("version", nargs="?", default=None, help="default: the champion")
    show.set_defaults(handler=run_show)

    promote = actions.add_parser("promote", help="make a version the champion")
    promote.add_argument("version")
    promote.add_argument(
        "--expect-champion",
        default=None,
        help="fail unless this version is the champion now (compare-and-swap)",
    )
    promote.add_argument(
        "--force",
        action="store_true",
        help="promote even though the version failed the evaluation gate",
    )
    promote.set_defaults(handler=run_promote)


def _registry(args: argparse.Namespace) -> Registry:
    settings = Settings()
    return Registry(args.registry or settings.registry, args.model_name or settings.model_name)


def run_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    champion = registry.champion_version()
    versions = registry.versions()
    if not versions:
        print(f"no versions of {registry.model_name} in {registry.root}")
        return 0
    print(f"{'':2}{'version':<28} {'created':<26} {'AUC':>7} {'calib.':>7}  gate")
    for version in versions:
        meta = registry.metadata(version)
        metrics = meta.get("metrics", {})
        auc, error = metrics.get("auc"), metrics.get("calibration_error")
        print(
            f"{'*' if version == champion else ' ':2}{version:<28} "
            f"{meta.get('created_at', ''):<26} "
            f"{'' if auc is None else f'{auc:.4f}':>7} "
            f"{'' if error is None else f'{error:+.1%}':>7}  "
            f"{'passed' if meta.get('gate', {}).get('passed') else 'FAILED'}"
        )
    print("* champion" if champion else "no champion yet")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from credit_risk.registry import ModelNotFoundError

    registry = _registry(args)
    version = args.version or registry.champion_version()
    if version is None:
        raise ModelNotFoundError(f"{registry.model_name} has no champion; name a version")
    print(json.dumps(registry.metadata(version), indent=2, sort_keys=True))
    return 0


def run_promote(args: argparse.Namespace) -> int:
    record = _registry(args).promote(
        args.version, expected_champion=args.expect_champion, force=args.force
    )
    previous = record["previous"] or "none"
    print(f"champion is now {record['version']} (was {previous})")
    return 0
