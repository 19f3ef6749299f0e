"""The scoring service behind the API: store lookup, model, decision, reasons.

Built once per process (a Lambda's cold start, or one "function version" of the
local server) from ``InferenceSettings``; the model is loaded and verified then, so
a missing or corrupt model fails the start instead of serving something else. A
function serving the champion follows promotions, and may start before any model
is in service (``credit_risk.serving.model_source``): it then answers ``NoModelError``.
The store connection opens on the first request and is reused. Each score can be
recorded to the scoring log (``credit_risk.monitoring.records``) with the features
it was computed from, as read from the store, never recomputed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import Field, SecretStr

from credit_risk import names, schemas
from credit_risk.errors import ConfigurationError, CreditRiskError
from credit_risk.model.package import ModelPackage
from credit_risk.monitoring.records import ScoreRecord, ScoreSink, StdoutSink, sink_for
from credit_risk.registry import Registry
from credit_risk.serving import models
from credit_risk.serving.model_source import ModelSource
from credit_risk.settings import Settings
from credit_risk.store import CustomerFeatures, FeatureStore, create_store

logger = logging.getLogger(__name__)

# Score histogram buckets published as metrics (upper bounds, the last is 1.0).
SCORE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class InferenceSettings(Settings):
    """The inference function's environment, validated at cold start."""

    model_version: str | None = Field(
        default=None,
        description="Registry version this function version serves (set per Lambda version).",
    )
    model_fallback_to_champion: bool = Field(
        default=False,
        description="Serve the registry's champion when model_version is unset.",
    )
    model_refresh_seconds: float = Field(
        default=float(names.MODEL_REFRESH_SECONDS),
        ge=0,
        description="Serving the champion: seconds between reads of the champion pointer "
        "(0: on every request); a changed champion is loaded and served from then on.",
    )
    id_hash_key: SecretStr | None = Field(
        default=None,
        description="Key of the keyed hash under which customer ids appear in logs.",
    )
    id_hash_secret_id: str | None = Field(
        default=None,
        description="Secrets Manager secret holding id_hash_key (used when that is unset).",
    )
    reasons_top_k: int = Field(default=3, ge=1, le=5)
    environment: str = Field(
        default="local", description="Deployment environment, recorded with every score."
    )


def score_bucket(probability: float) -> str:
    """The histogram bucket label of a probability, e.g. ``0.02-0.05``."""
    lower = 0.0
    for upper in SCORE_BUCKETS:
        if probability < upper or upper == SCORE_BUCKETS[-1]:
            return f"{lower:g}-{upper:g}"
        lower = upper
    raise AssertionError("unreachable")


class IdHasher:
    """Keyed hash of customer ids for logs and the scoring log: stable for one key,
    and without the key a 7-digit id cannot be recovered by trying them all."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, customer_id: str) -> str:
        digest = hmac.new(self._key, customer_id.encode("utf-8"), hashlib.sha256)
        return digest.hexdigest()[:24]


LOCAL_HASH_KEY_FILE = "id-hash-key"


def hash_key(settings: InferenceSettings) -> bytes | None:
    """The key of the customer-id hash: ``id_hash_key``, else the Secrets Manager
    secret ``id_hash_secret_id``, else, off Lambda, a key kept in
    ``<local_dir>/id-hash-key`` (made on first use) so that the local server, the
    traffic simulator and the monitor hash alike. None in Lambda with neither set."""
    if settings.id_hash_key is not None:
        return settings.id_hash_key.get_secret_value().encode()
    if settings.id_hash_secret_id:
        from aws_lambda_powertools.utilities import parameters

        return str(parameters.get_secret(settings.id_hash_secret_id, max_age=3600)).encode()
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return None
    return _local_key(settings.local_dir / LOCAL_HASH_KEY_FILE)


def _local_key(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Exclusive create, owner-only: two processes starting together agree on
        # whichever key was written first.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    key = secrets.token_hex(32).encode()
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    return key


def _key_or_random(settings: InferenceSettings) -> bytes:
    key = hash_key(settings)
    if key is None:
        logger.warning("no id hash key configured: customer-id hashes are per process")
        return secrets.token_bytes(32)
    return key


class NoModelError(CreditRiskError):
    """No model is in service yet: the registry has no champion (an empty environment)."""

    def __init__(self, environment: str) -> None:
        super().__init__(
            f"no model is in service yet; run `credit-risk env bootstrap --env {environment}`"
        )


@dataclass(frozen=True)
class ServedScore:
    """A score and the store row it was computed from."""

    score: models.Score
    features: CustomerFeatures


@dataclass
class ScoringService:
    """Scores with ``model``; with a ``source``, ``refresh_model`` makes ``model`` the
    one the source serves now (None while no model is in service)."""

    model: ModelPackage | None
    store: FeatureStore
    hash_id: IdHasher
    top_k: int = 3
    environment: str = "local"
    scoring_log: ScoreSink = field(default_factory=StdoutSink)
    source: ModelSource | None = None

    @property
    def model_version(self) -> str | None:
        return self.model.version if self.model is not None else None

    def refresh_model(self) -> ModelPackage | None:
        """Picks up a new champion when one is due. Called once per request, so that
        a request is scored by one model from start to end."""
        if self.source is not None:
            self.model = self.source.current()
        return self.model

    def serving_model(self) -> ModelPackage:
        """The model in service; ``NoModelError`` while there is none."""
        if self.model is None:
            raise NoModelError(self.environment)
        return self.model

    def score_customers(self, customer_ids: Sequence[str]) -> tuple[list[ServedScore], list[str]]:
        """Scores in request order (duplicates repeated), with the rows they came
        from, and the unknown ids apart; one store round trip for the request."""
        self.serving_model()  # no model: refused before the store is read
        found = self.store.get_many(customer_ids)
        unknown = [cid for cid in customer_ids if cid not in found]
        return self.score_rows([found[cid] for cid in customer_ids if cid in found]), unknown

    def score_rows(self, rows: Sequence[CustomerFeatures]) -> list[ServedScore]:
        """Scores feature rows already read from the store, in one model call."""
        model = self.serving_model()
        if not rows:
            return []
        matrix = model.to_matrix(
            [dict(zip(model.feature_names, row.feature_values(), strict=True)) for row in rows]
        )
        scored = model.score(matrix, top_k=self.top_k)
        return [
            ServedScore(
                score=models.Score(
                    customer_id=row.customer_id,
                    default_probability=round(score.default_probability, 6),
                    decision=score.decision,
                    threshold=model.threshold,
                    reasons=[models.Reason(**reason.to_dict()) for reason in score.reasons],
                    model_version=model.version,
                    features_as_of=row.as_of,
                ),
                features=row,
            )
            for row, score in zip(rows, scored, strict=True)
        ]

    def score_many(self, customer_ids: Sequence[str]) -> tuple[list[models.Score], list[str]]:
        """Scores in request order (duplicates repeated) and the unknown ids apart."""
        served, unknown = self.score_customers(customer_ids)
        return [item.score for item in served], unknown

    def score_records(
        self, served: Sequence[ServedScore], request_id: str, scored_at: datetime | None = None
    ) -> list[ScoreRecord]:
        """The scoring-log records of one request's scores (customer ids hashed)."""
        scored_at = scored_at or datetime.now(UTC)
        return [
            ScoreRecord(
                request_id=request_id,
                customer_hash=self.hash_id(item.score.customer_id),
                model_version=item.score.model_version,
                snapshot_id=item.features.snapshot_id,
                features_as_of=item.features.as_of,
                features=dict(
                    zip(schemas.FEATURE_NAMES, item.features.feature_values(), strict=True)
                ),
                default_probability=item.score.default_probability,
                decision=item.score.decision,
                scored_at=scored_at,
                environment=self.environment,
            )
            for item in served
        ]

    def log_scores(
        self, served: Sequence[ServedScore], request_id: str, scored_at: datetime | None = None
    ) -> None:
        """Writes one request's scores to the scoring log."""
        if served:
            self.scoring_log.write(self.score_records(served, request_id, scored_at))

    def score(self, customer_id: str) -> models.Score | None:
        results, _ = self.score_many([customer_id])
        return results[0] if results else None

    def health(self) -> models.HealthResponse:
        model = self.serving_model()
        store = self.store.health()
        snapshot = self.store.active_snapshot() if store.ok else None
        return models.HealthResponse(
            status="ok" if store.ok else "degraded",
            model_version=model.version,
            store_reachable=store.ok,
            features_as_of=snapshot.as_of if snapshot else None,
            snapshot_id=snapshot.snapshot_id if snapshot else None,
        )

    def model_age_days(self, today: date | None = None) -> float | None:
        trained_at = self.model.metadata.get("created_at") if self.model is not None else None
        if not trained_at:
            return None
        created = datetime.fromisoformat(trained_at)
        now = datetime.now(UTC) if today is None else datetime.combine(today, created.time(), UTC)
        return (now - created).total_seconds() / 86_400


def build_service(
    settings: InferenceSettings | None = None,
    *,
    on_model_refresh_error: Callable[[Exception], None] | None = None,
) -> ScoringService:
    """Loads and verifies the pinned model (or the champion, when there is one) and
    prepares the (lazy) store. ``on_model_refresh_error`` hears of a new champion
    that could not be loaded (the previous model keeps serving)."""
    settings = settings or InferenceSettings()
    if settings.model_version is None and not settings.model_fallback_to_champion:
        raise ConfigurationError(
            "CREDIT_RISK_MODEL_VERSION is not set and falling back to the champion is not "
            "enabled (CREDIT_RISK_MODEL_FALLBACK_TO_CHAMPION=true)"
        )
    scoring_log = sink_for(settings.scoring_log_uri)
    source = ModelSource(
        Registry(settings.registry, settings.model_name),
        pinned_version=settings.model_version,
        refresh_seconds=settings.model_refresh_seconds,
        on_refresh_error=on_model_refresh_error,
    )
    return ScoringService(
        model=source.current(),
        source=source,
        store=create_store(settings),
        hash_id=IdHasher(_key_or_random(settings)),
        top_k=settings.reasons_top_k,
        environment=settings.environment,
        scoring_log=scoring_log,
    )
