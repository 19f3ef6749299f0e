"""The scoring service behind the API: store lookup, model, decision, reasons.

Built once per process (a Lambda's cold start, or one "function version" of the
local server) from ``InferenceSettings``; the model is loaded and verified then, so
a missing or corrupt model fails the start instead of serving something else. A
function serving the champion follows promotions, and may start before any model
is in service (``credit_risk.serving.model_source``): it then answers ``NoModelError``.
The store connection opens on the first request and is reused. Each score can be
recorded to the scoring log (``credit_risk.monitoring.records``) with the features
it was computed from, as read from the store, never recomputed.

While a model release is in progress (``score_request``), every customer is scored
by both the champion and the release's candidate, in-process: the model the keyed
hash assigns the customer to (``credit_risk.serving.assignment``; the candidate
only in a canary step) answers, and the other's answer is recorded beside it as a
shadow score with the same request id, never returned. The request's release
counts (``credit_risk.release_metrics``) come back with the scores. A candidate
that fails (to load, to score, to give reasons) fails no customer: the champion
answers every customer of that request, the candidate's included, and the
failures are counted, which stops the release at its next check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import Field, SecretStr, TypeAdapter

from credit_risk import decision_ids, names, schemas
from credit_risk.errors import ConfigurationError, CreditRiskError
from credit_risk.model.package import ModelPackage
from credit_risk.model.reasons import MAX_REASONS
from credit_risk.monitoring.records import (
    SERVED,
    SHADOW,
    ScoreRecord,
    ScoreSink,
    StdoutSink,
    sink_for,
)
from credit_risk.registry import Registry, ReleaseState
from credit_risk.release_metrics import Decided, ReleaseCounts
from credit_risk.serving import assignment, decisions, models
from credit_risk.serving.model_source import ModelSource, Serving
from credit_risk.settings import Settings
from credit_risk.store import CustomerFeatures, FeatureStore, create_store
from credit_risk.store.base import all_finite, feature_values

logger = logging.getLogger(__name__)

# Score histogram buckets published as metrics (upper bounds, the last is 1.0).
SCORE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
_BUCKET_LABELS = tuple(
    f"{lower:g}-{upper:g}"
    for lower, upper in zip((0.0, *SCORE_BUCKETS[:-1]), SCORE_BUCKETS, strict=True)
)
# CloudWatch takes at most this many values of one metric in one EMF document.
EMF_MAX_VALUES = 100
# EMF metric declarations serialised once and kept, up to this many sets of names.
EMF_DECLARATIONS_KEPT = 256
_EMF_DECLARATIONS: dict[tuple[str, ...], str] = {}
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
_SCORES = TypeAdapter(list[models.Score])


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
    reasons_top_k: int = Field(
        default=MAX_REASONS,
        ge=1,
        le=MAX_REASONS,
        description="Reasons given per score; at most 4, as Regulation B's commentary asks.",
    )


def score_bucket(probability: float) -> str:
    """The histogram bucket label of a probability, e.g. ``0.02-0.05``: the first
    bucket whose upper bound is above it (the last bucket includes its bound)."""
    return _BUCKET_LABELS[min(bisect_right(SCORE_BUCKETS, probability), len(SCORE_BUCKETS) - 1)]


class IdHasher:
    """Keyed hash of customer ids for logs and the scoring log: stable for one key,
    and without the key a 7-digit id cannot be recovered by trying them all."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        # Keyed once: each id then costs a copy of the keyed state, not a re-keying.
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, customer_id: str) -> str:
        digest = self._keyed.copy()
        digest.update(customer_id.encode("utf-8"))
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


def assignment_key(settings: InferenceSettings) -> bytes:
    """The key of the release assignment: the id hash key, which every instance of
    an environment shares. Without one (a Lambda configured with neither key nor
    secret) a fixed key keeps the assignment consistent across instances, though
    then anyone could compute it; the warning says so."""
    key = hash_key(settings)
    if key is None:
        logger.warning("no id hash key configured: release assignment uses a public key")
        return b"credit-risk-release-assignment"
    return key


class UnscorableFeaturesError(CreditRiskError):
    """Stored features no model can score (NaN or an infinity) for some of the
    request's customers: ``customer_ids``, and the features concerned."""

    def __init__(self, customer_ids: list[str], features: list[str]) -> None:
        super().__init__(
            f"the stored features of {len(customer_ids)} of the requested customers "
            f"cannot be scored ({', '.join(features)} not a finite number); the feature "
            "snapshot needs repairing"
        )
        self.customer_ids, self.features = customer_ids, features


class NoModelError(CreditRiskError):
    """No model is in service yet: the registry has no champion (an empty environment)."""

    def __init__(self, environment: str) -> None:
        super().__init__(
            "no model is in service yet; run `credit-risk env bootstrap "
            f"{names.deployment_options(environment)}`"
        )


@dataclass(frozen=True)
class ServedScore:
    """A score and the store row it was computed from; during a release, the other
    model's answer for the same customer (recorded, never returned)."""

    score: models.Score
    features: CustomerFeatures
    shadow: models.Score | None = None


@dataclass(frozen=True)
class ScoredRequest:
    """One request's scores in request order, the unknown ids apart, and, while a
    release is in progress, the release and the request's counts for it."""

    served: list[ServedScore]
    unknown: list[str]
    release: ReleaseState | None = None
    counts: ReleaseCounts | None = None


@dataclass
class ScoringService:
    """Scores with ``model``; with a ``source``, ``refresh_model`` makes ``model`` the
    one the source serves now (None while no model is in service)."""

    model: ModelPackage | None
    store: FeatureStore
    hash_id: IdHasher
    top_k: int = MAX_REASONS
    environment: str = "local"
    scoring_log: ScoreSink = field(default_factory=StdoutSink)
    source: ModelSource | None = None
    assignment_key: bytes = b""
    serving: Serving | None = None

    @property
    def model_version(self) -> str | None:
        return self.model.version if self.model is not None else None

    def refresh_model(self, *, force: bool = False) -> ModelPackage | None:
        """Picks up a new champion and the release record when due (or ``force``).
        Called once per request, so that a request is scored by one pair of models
        from start to end."""
        if self.source is not None:
            self.serving = self.source.serving(refresh=force)
            self.model = self.serving.champion
        return self.model

    def score_request(self, customer_ids: Sequence[str]) -> ScoredRequest:
        """The API's scoring: ``score_customers`` with the release in progress, if
        any, taking part (see the module's docstring)."""
        self.serving_model()
        release = self.serving.release if self.serving is not None else None
        rows, unknown = self._read(customer_ids)
        if release is None:
            return ScoredRequest(self.score_rows(rows), unknown)
        if not rows:
            return ScoredRequest([], unknown, release, ReleaseCounts())
        served, counts = self._score_in_release(rows, release)
        return ScoredRequest(served, unknown, release, counts)

    def _score_in_release(
        self, rows: Sequence[CustomerFeatures], release: ReleaseState
    ) -> tuple[list[ServedScore], ReleaseCounts]:
        """Both models' answers for every customer. Each model's probabilities for
        all rows are computed the same way and timed (the latency gate compares the
        two on the same work); reasons, the costly pass, are computed for the
        answers given, and for a shadow only where its decision differs from the
        answer (the swap set, which a reviewer reads)."""
        assert self.serving is not None
        champion, candidate = self.serving_model(), self.serving.candidate
        on_candidate = [
            assignment.on_candidate(
                assignment.bucket(self.assignment_key, release.release_id, row.customer_id),
                release.candidate_percent,
            )
            for row in rows
        ]
        answered = sum(on_candidate)
        by_champion = [row for row, moved in zip(rows, on_candidate, strict=True) if not moved]
        by_candidate = [row for row, moved in zip(rows, on_candidate, strict=True) if moved]
        champion_p, champion_ms = _timed_probabilities(champion, rows)
        try:
            if candidate is None:
                raise CreditRiskError(self.serving.candidate_error or "the candidate is not loaded")
            candidate_p, candidate_ms = _timed_probabilities(candidate, rows)
            candidate_answers = iter(self._scores(candidate, by_candidate))
        except Exception as exc:
            # One line, no traceback: a broken candidate fails every request it sees.
            logger.error("release %s: the candidate failed: %s", release.release_id, exc)
            counts = ReleaseCounts.observe(candidate_errors=len(rows), champion_ms=champion_ms)
            return self.score_rows(rows), counts
        champion_answers = iter(self._scores(champion, by_champion))
        served: list[ServedScore] = []
        for i, (row, moved) in enumerate(zip(rows, on_candidate, strict=True)):
            if moved:
                answer, shadow = next(candidate_answers), _bare(champion, row, champion_p[i])
            else:
                answer, shadow = next(champion_answers), _bare(candidate, row, candidate_p[i])
            served.append(ServedScore(answer, row, shadow))
        served, unexplained = self._explain_flips(served, champion, candidate)
        pairs = [
            (Decided(c.default_probability, c.decision), Decided(n.default_probability, n.decision))
            for c, n in (
                (item.shadow, item.score)
                if item.score.model_version == candidate.version
                else (item.score, item.shadow)
                for item in served
                if item.shadow is not None
            )
        ]
        counts = ReleaseCounts.observe(
            pairs,
            candidate_served=answered,
            candidate_errors=unexplained,
            champion_ms=champion_ms,
            candidate_ms=candidate_ms,
        )
        return served, counts

    def _explain_flips(
        self, served: list[ServedScore], champion: ModelPackage, candidate: ModelPackage
    ) -> tuple[list[ServedScore], int]:
        """Shadows whose decision differs from the answer, scored again with reasons,
        and how many of the candidate's could not be (its reasons pass failed: those
        shadows keep no reasons, and the failures count against the candidate; the
        answers are not touched)."""
        flipped = [
            i
            for i, item in enumerate(served)
            if item.shadow is not None and item.shadow.decision != item.score.decision
        ]
        result, failed = list(served), 0
        for model in (champion, candidate):
            mine = [i for i in flipped if served[i].shadow.model_version == model.version]
            try:
                explained = self._scores(model, [served[i].features for i in mine])
            except Exception as exc:
                if model is champion:
                    raise
                logger.error("the candidate's reasons failed: %s", exc)
                failed += len(mine)
                continue
            for i, shadow in zip(mine, explained, strict=True):
                result[i] = ServedScore(served[i].score, served[i].features, shadow)
        return result, failed

    def serving_model(self) -> ModelPackage:
        """The model in service; ``NoModelError`` while there is none."""
        if self.model is None:
            raise NoModelError(self.environment)
        return self.model

    def score_customers(self, customer_ids: Sequence[str]) -> tuple[list[ServedScore], list[str]]:
        """Scores in request order (duplicates repeated), with the rows they came
        from, and the unknown ids apart; one store round trip for the request."""
        self.serving_model()  # no model: refused before the store is read
        rows, unknown = self._read(customer_ids)
        return self.score_rows(rows), unknown

    def _read(self, customer_ids: Sequence[str]) -> tuple[list[CustomerFeatures], list[str]]:
        """The customers' stored rows in request order and the unknown ids apart;
        ``UnscorableFeaturesError`` when a row holds no number a model can score."""
        found = self.store.get_many(customer_ids)
        rows = [found[cid] for cid in customer_ids if cid in found]
        # Checked once per request (this runs on every one): only a request whose
        # values do not add up to a finite number looks at each row.
        if not all_finite(rows):
            broken = {row.customer_id: bad for row in rows if (bad := row.non_finite())}
            if broken:
                features = sorted({name for names_ in broken.values() for name in names_})
                raise UnscorableFeaturesError(list(broken), features)
        if len(rows) == len(customer_ids):
            return rows, []
        return rows, [cid for cid in customer_ids if cid not in found]

    def score_rows(self, rows: Sequence[CustomerFeatures]) -> list[ServedScore]:
        """Scores feature rows already read from the store with the champion, in one
        model call."""
        model = self.serving_model()
        return [
            ServedScore(score, row)
            for score, row in zip(self._scores(model, rows), rows, strict=True)
        ]

    def _scores(self, model: ModelPackage, rows: Sequence[CustomerFeatures]) -> list[models.Score]:
        if not rows:
            return []
        # By name: the store gives its values in schemas.FEATURE_NAMES order and the
        # model takes its features in its own order; a model that needs a feature the
        # store does not have fails here instead of scoring on a neighbour's value.
        scored = model.score_values(
            [feature_values(row) for row in rows],
            schemas.FEATURE_NAMES,
            top_k=self.top_k,
            as_dicts=True,
        )
        threshold, version = model.threshold, model.version
        # Validated as built, every score in one call.
        return _SCORES.validate_python(
            [
                {
                    "customer_id": row.customer_id,
                    "default_probability": round(
                        score.default_probability, names.PROBABILITY_DECIMALS
                    ),
                    "decision": score.decision,
                    "threshold": threshold,
                    "reasons": score.reasons,
                    "model_version": version,
                    "features_as_of": row.as_of,
                    "decision_id": decision_id,
                }
                for row, score, decision_id in zip(
                    rows, scored, decision_ids.new_ids(len(rows)), strict=True
                )
            ]
        )

    def score_many(self, customer_ids: Sequence[str]) -> tuple[list[models.Score], list[str]]:
        """Scores in request order (duplicates repeated) and the unknown ids apart."""
        served, unknown = self.score_customers(customer_ids)
        return [item.score for item in served], unknown

    def record_decisions(
        self,
        scored: ScoredRequest,
        request_id: str,
        decided_at: datetime,
        *,
        caller: str | None = None,
        synthetic: str | None = None,
    ) -> None:
        """Records the request's answers (not their shadows) as decisions, committed
        before this returns (``credit_risk.serving.decisions``); raises when they
        cannot be, and then the answers must not be given."""
        release_id = scored.release.release_id if scored.release is not None else None
        self.store.record_decisions(
            decisions.decision_rows(
                [(item.score, item.features) for item in scored.served],
                request_id=request_id,
                decided_at=decided_at,
                environment=self.environment,
                release_id=release_id,
                caller=caller,
                synthetic=synthetic,
            )
        )

    def score_records(
        self,
        served: Sequence[ServedScore],
        request_id: str,
        scored_at: datetime | None = None,
        release_id: str | None = None,
        customer_hashes: Sequence[str] | None = None,
    ) -> list[ScoreRecord]:
        """The scoring-log records of one request's scores (customer ids hashed):
        each answer, followed by its shadow when a release scored one.
        ``customer_hashes``: the served customers' hashes, if already computed."""
        scored_at = scored_at or datetime.now(UTC)
        if customer_hashes is None:
            customer_hashes = [self.hash_id(item.score.customer_id) for item in served]
        records = []
        environment = self.environment
        for item, customer_hash in zip(served, customer_hashes, strict=True):
            row = item.features
            features = dict(zip(schemas.FEATURE_NAMES, feature_values(row), strict=True))
            for role, score in ((SERVED, item.score), (SHADOW, item.shadow)):
                if score is not None:
                    records.append(
                        ScoreRecord(
                            request_id=request_id,
                            customer_hash=customer_hash,
                            model_version=score.model_version,
                            snapshot_id=row.snapshot_id,
                            features_as_of=row.as_of,
                            features=features,
                            default_probability=score.default_probability,
                            decision=score.decision,
                            scored_at=scored_at,
                            environment=environment,
                            role=role,
                            release_id=release_id,
                            reasons=tuple(reason.code for reason in score.reasons),
                            # A shadow's is its answer's: the decision it stood beside.
                            decision_id=item.score.decision_id,
                        )
                    )
        return records

    def log_scores(
        self,
        served: Sequence[ServedScore],
        request_id: str,
        scored_at: datetime | None = None,
        release_id: str | None = None,
        customer_hashes: Sequence[str] | None = None,
    ) -> None:
        """Writes one request's scores (and shadows) to the scoring log."""
        if served:
            self.scoring_log.write(
                self.score_records(served, request_id, scored_at, release_id, customer_hashes)
            )

    @staticmethod
    def score_metrics(
        scored: int,
        unknown: int,
        probabilities: Sequence[float],
        buckets: Mapping[str, int],
        dimensions: Mapping[str, str],
        timestamp_ms: int,
        namespace: str,
    ) -> list[str]:
        """A request's score metrics as EMF documents in ``namespace`` (the deployment's,
        ``names.metric_namespace``), one line each: how many customers were scored
        (``ScoresServed``) and unknown (``UnknownCustomers``), every probability served
        (``DefaultProbability``) and the count of each histogram bucket (``buckets``:
        label -> count), named after the bucket (``ScoreBucket_0.02-0.05``; a bucket
        dimension would cost one document per bucket on every request). Built whole,
        not a value at a time as Powertools adds them (at a cost that grows with the
        values it already holds): one document, or more when there are more
        probabilities than one document may carry for a metric (``EMF_MAX_VALUES``)."""
        counts = {
            "ScoresServed": scored,
            "UnknownCustomers": unknown,
            **{f"ScoreBucket_{bucket}": count for bucket, count in buckets.items()},
        }
        documents = []
        for start in range(0, max(len(probabilities), 1), EMF_MAX_VALUES):
            values = {}
            if probabilities:
                values["DefaultProbability"] = list(probabilities[start : start + EMF_MAX_VALUES])
            documents.append(_emf_document(namespace, timestamp_ms, dimensions, counts, values))
            counts = {}
        return documents

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


def _emf_document(
    namespace: str,
    timestamp_ms: int,
    dimensions: Mapping[str, str],
    counts: Mapping[str, int],
    values: Mapping[str, list[float]],
) -> str:
    """One EMF line: ``counts`` (unit Count) and ``values`` (no unit) with the
    ``dimensions``. The metric declarations, the same from one request to the next,
    are serialised once per namespace and set of names."""
    key = (namespace, *dimensions, "", *counts, "", *values)
    declared = _EMF_DECLARATIONS.get(key)
    if declared is None:
        if len(_EMF_DECLARATIONS) >= EMF_DECLARATIONS_KEPT:
            _EMF_DECLARATIONS.clear()
        directive = {
            "Namespace": namespace,
            "Dimensions": [list(dimensions)],
            "Metrics": [
                *({"Name": name, "Unit": "Count"} for name in counts),
                *({"Name": name, "Unit": "None"} for name in values),
            ],
        }
        declared = _EMF_DECLARATIONS[key] = _COMPACT_JSON.encode([directive])
    members = _COMPACT_JSON.encode({**dimensions, **counts, **values})
    return (
        f'{{"_aws":{{"Timestamp":{int(timestamp_ms)},"CloudWatchMetrics":{declared}}},{members[1:]}'
    )


def _timed_probabilities(
    model: ModelPackage, rows: Sequence[CustomerFeatures]
) -> tuple[list[float], float]:
    started = time.perf_counter()
    matrix = model.matrix_from([feature_values(row) for row in rows], schemas.FEATURE_NAMES)
    probabilities = model.predict(matrix).tolist()
    return probabilities, (time.perf_counter() - started) * 1000


def _bare(model: ModelPackage, row: CustomerFeatures, probability: float) -> models.Score:
    """A shadow answer without its reasons (added only where the decisions differ)."""
    return models.Score(
        customer_id=row.customer_id,
        default_probability=round(probability, names.PROBABILITY_DECIMALS),
        decision=model.decide([probability])[0],
        threshold=model.threshold,
        reasons=[],
        model_version=model.version,
        features_as_of=row.as_of,
        # Never recorded, never returned: the scoring log writes the answer's.
        decision_id=decision_ids.new_ids(1)[0],
    )


def build_service(
    settings: InferenceSettings | None = None,
    *,
    on_model_refresh_error: Callable[[Exception], None] | None = None,
    on_candidate_error: Callable[[Exception], None] | None = None,
) -> ScoringService:
    """Loads and verifies the pinned model (or the champion, when there is one, and
    the candidate of a release in progress) and prepares the (lazy) store.
    ``on_model_refresh_error`` hears of a new champion that could not be loaded
    (the previous model keeps serving), ``on_candidate_error`` of a candidate that
    could not be."""
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
        on_candidate_error=on_candidate_error,
    )
    serving = source.serving()
    return ScoringService(
        model=serving.champion,
        source=source,
        serving=serving,
        assignment_key=assignment_key(settings),
        store=create_store(settings),
        hash_id=IdHasher(_key_or_random(settings)),
        top_k=settings.reasons_top_k,
        environment=settings.environment,
        scoring_log=scoring_log,
    )
