"""``credit-risk decisions``: read recorded credit decisions from the store.

The API's ``GET /v1/decisions/{decision_id}`` for whoever holds the store's
credentials (a risk analyst answering a dispute, an auditor), and the one query the
API does not offer: a customer's decisions, newest first. Each is printed as the
document the API returns, one JSON line per decision.
"""

from __future__ import annotations

import argparse

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
    listing.set_defaults(handler=_list)
    for action in (show, listing):
        add_database_url(action)


class DecisionNotFoundError(CreditRiskError):
    """No decision with this id is on record."""


def _show(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        record = decisions.lookup(store, args.decision_id)
    if record is None:
        raise DecisionNotFoundError(
            f"no decision {args.decision_id} on record (never made here, or purged after "
            "its retention)"
        )
    print(record.model_dump_json())
    return 0


def _list(args: argparse.Namespace) -> int:
    with open_store(args.database_url) as store:
        documents = store.customer_decision_documents(args.customer, args.limit)
    for document in documents:
        print(DecisionRecord.model_validate_json(document).model_dump_json())
    return 0
