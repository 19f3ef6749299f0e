"""Recorded credit decisions: what the API answered, kept to be looked up later.

Every score the API returns carries a ``decision_id``; before the answer leaves,
the decision is written to the feature-store database (``FeatureStore.record_decisions``)
as the document ``GET /v1/decisions/{decision_id}`` returns: the probability, the
decision and its threshold, the reasons as given, the model version, the features as
read from the store, the snapshot and the time. A lookup reads that document back;
nothing is recomputed, so a notice or a dispute months later quotes what the
customer was told even after the model, the reason table or the snapshot changed.

Why the feature-store database: the API already holds a connection to it on every
request, so a record costs one more statement on that connection rather than a
client for another service on the cold path; it is durable (Multi-AZ and backed up
in prod) and a lookup is a primary-key read. The write is synchronous and committed
before the answer is returned: a decision that cannot be recorded is not given (the
client gets a 503 and retries), so no customer holds a decision the lender cannot
produce. Records older than the retention (``decision_retention_days``; prod keeps
25 months, Regulation B's 1002.12(b)) are purged by each feature load.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from credit_risk import decision_ids, schemas
from credit_risk.serving import models
from credit_risk.store import CustomerFeatures, DecisionRow, FeatureStore


def decision_rows(
    served: Sequence[tuple[models.Score, CustomerFeatures]],
    *,
    request_id: str,
    decided_at: datetime,
    environment: str,
    release_id: str | None = None,
    caller: str | None = None,
    synthetic: str | None = None,
) -> list[DecisionRow]:
    """The records of one request's answers: ``served`` pairs each score returned
    with the store row (``CustomerFeatures``) it was computed from; ``caller`` is
    the API key's id, ``synthetic`` names our own synthetic caller (the probe)."""
    decided_text = decided_at.astimezone(UTC).isoformat(timespec="microseconds")
    rows = []
    for score, features in served:
        document = {
            "decision_id": score.decision_id,
            "decided_at": decided_text,
            "request_id": request_id,
            "customer_id": score.customer_id,
            "default_probability": score.default_probability,
            "decision": score.decision,
            "threshold": score.threshold,
            "reasons": score.reasons,
            "model_version": score.model_version,
            "features": {name: getattr(features, name) for name in schemas.FEATURE_NAMES},
            "features_as_of": score.features_as_of,
            "snapshot_id": features.snapshot_id,
            "release_id": release_id,
            "environment": environment,
            "caller": caller,
            "synthetic": synthetic,
        }
        rows.append(
            DecisionRow(
                decision_id=score.decision_id,
                decided_at=decided_at,
                customer_id=score.customer_id,
                model_version=score.model_version,
                document=models.dump_json(document),
                synthetic=synthetic is not None,
            )
        )
    return rows


def lookup(store: FeatureStore, decision_id: str) -> tuple[models.DecisionRecord, str] | None:
    """The recorded decision and its document's text exactly as written (what the
    API returns); None when no decision has this id (never made here, or purged
    after its retention). The record is read to check that it is one."""
    document = store.decision_document(decision_ids.normalized(decision_id))
    if document is None:
        return None
    return models.DecisionRecord.model_validate_json(document), document
