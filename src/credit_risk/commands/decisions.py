"""``credit-risk decisions``: read, purge and move recorded credit decisions in the store.

The API's ``GET /v1/decisions/{decision_id}`` for whoever holds the store's
credentials (a risk analyst answering a dispute, an auditor), and the one query the
API does not offer: a customer's decisions, newest first. Each is printed as the
document the API returns, one JSON line per decision.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from credit_risk import decision_transfer
from credit_risk.commands.store import add_database_url, open_store
from credit_risk.errors import CreditRiskError
from credit_risk.serving import decisions
from credit_risk.serving.models import DecisionRecord

DEFAULT_LIMIT = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decisions",
        help="recorded credit decisions: one by id, or a customer's",
        description="Read the credit decisions the API recorded, as it answered them.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="one decision, by the decision_id of its score")
    show.add_argument("decision_id", metavar="DECISION_ID")
    show.set_defaults(handler=_show)
    listing = actions.add_parser("list", help="a customer's decisions, newest first")
    listing.add_argument("--customer", required=True, metavar="CUSTOMER_ID")
    listing.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help=f"at most this many ({DEFAULT_LIMIT})"
    )
    listing.add_argument(
        "--include-synthetic",
        action="store_true",
        help="also the decisions of synthetic traffic (the probe, the smoke test)",
    )
    listing.set_defaults(handler=_list)
    # Deployed environments purge on every feature load, with their own retention;
    # from a shell it is asked for, with the period spelled out.
    purge = actions.add_parser("purge", help="delete the decisions older than a period")
    purge.add_argument("--older-than-days", type=int, required=True, metavar="DAYS")
    purge.set_defaults(handler=_purge)
    # The decision record moved between stores: a standby's into its primary's (a
    # failback does it through the feature loaders), or a restored backup's.
    export = actions.add_parser(
        "export", help="write every recorded decision to a folder (local or s3://)"
    )
    export.add_argument("--to", required=True, dest="folder", metavar="FOLDER")
    export.set_defaults(handler=_export)
    importing = actions.add_parser(
        "import", help="record the decisions of an export, skipping those already recorded"
    )
    importing.add_argument("--from", required=True, dest="folder", metavar="FOLDER")
    importing.set_defaults(handler=_import)
    for action in (show, listing, purge, export, importing):
        add_database_url(action)


class DecisionNotFoundError(CreditRiskError):
    """No decision with this id is on record."""


def _show(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        found = decisions.lookup(store, args.decision_id)
    if found is None:
        raise DecisionNotFoundError(
            f"no decision {args.decision_id} on record (never made here, or purged after "
            "its retention)"
        )
    print(found[1])
    return 0


def _list(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        documents = store.customer_decision_documents(
            args.customer, args.limit, include_synthetic=args.include_synthetic
        )
    for document in documents:
        DecisionRecord.model_validate_json(document)  # a decision record, or an error
        print(document)
    return 0


def _purge(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        purged = store.purge_decisions(timedelta(days=args.older_than_days))
    print(f"purged {purged:,} decisions older than {args.older_than_days} days")
    return 0


def _export(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        manifest = decision_transfer.export_decisions(store, args.folder)
    parts = len(manifest.parts)
    print(f"exported {manifest.count:,} decisions in {parts} part(s) to {args.folder}")
    return 0


def _import(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        result = decision_transfer.import_decisions(store, args.folder)
    print(
        f"imported {result.count:,} decisions from {args.folder}: {result.recorded:,} recorded, "
        f"{result.count - result.recorded:,} already on record"
    )
    return 0
