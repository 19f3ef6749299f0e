"""A synthetic client of the scoring API: its health and one known customer's score,
through the API's URL with the client key, once.

``credit-risk probe`` runs it from a shell; in AWS the probe function
(``lambdas/probe/handler.py``) runs it on a schedule and publishes what it found as
the metrics the Monitoring stack alarms on. Both compare the answer with the one the
previous probe got (``compare_answers``): the same customer, scored by the same
model version on the same feature snapshot, must get the same answer. A promotion
or a new snapshot may change it; anything else that does (a code release that
changed a decision, features rewritten in place) is what the answer-changed alarm
is for.

HTTP goes through the standard library, as in the release smoke test
(``infra/smoke_test.py``), which diagnoses the same answers the same way but cannot
import this module: it runs where the project is not installed.
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from credit_risk import io, names
from credit_risk.errors import InvalidInputError, validation_problems
from credit_risk.serving.models import Score, ScoreRequest

DEFAULT_TIMEOUT_SECONDS = 10.0
# The first customer of every synthetic extract (credit_risk.datagen), as in the
# smoke test: an environment bootstrapped with synthetic data holds it.
DEFAULT_CUSTOMER_ID = "1234567"
# Below this, two probabilities are the same answer: float noise of a rebuilt
# numeric library, not a different score.
PROBABILITY_TOLERANCE = 1e-6
HEALTH, SCORE = "health", "score"
# The synthetic caller a probe's requests are recorded under (names.SYNTHETIC_HEADER).
PROBE_CALLER = "probe"
# How an answer compares with the previous probe's.
FIRST, UNCHANGED, EXPLAINED, CHANGED = "first", "unchanged", "explained", "changed"


class UnreadableStateError(InvalidInputError):
    """The state holds something other than a probe's answer."""


@dataclass(frozen=True)
class Check:
    """One call of the probe: what it asked, whether the answer was right, and why not."""

    name: str
    ok: bool
    detail: str
    status: int | None = None
    latency_ms: float | None = None


@dataclass(frozen=True)
class Answer:
    """What the API answered for the probe customer, and what it answered with."""

    url: str
    customer_id: str
    default_probability: float
    decision: str
    threshold: float
    reason_codes: tuple[str, ...]
    model_version: str
    features_as_of: str
    snapshot_id: str | None
    checked_at: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Answer:
        try:
            return _ANSWER.validate_json(data)
        except ValidationError as exc:
            raise UnreadableStateError(
                f"{where} does not hold a probe answer ({validation_problems(exc)})"
            ) from None


_ANSWER = TypeAdapter(Answer)


@dataclass(frozen=True)
class Comparison:
    status: str  # FIRST, UNCHANGED, EXPLAINED or CHANGED
    detail: str


@dataclass(frozen=True)
class ProbeResult:
    url: str
    customer_id: str
    checks: tuple[Check, ...]
    answer: Answer | None
    comparison: Comparison | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def answer_changed(self) -> bool:
        return self.comparison is not None and self.comparison.status == CHANGED

    def summary(self) -> dict[str, Any]:
        """The result as JSON-ready data (the probe function returns and logs it)."""
        return {
            "ok": self.ok,
            "url": self.url,
            "customer_id": self.customer_id,
            "checks": [asdict(check) for check in self.checks],
            "answer": asdict(self.answer) if self.answer else None,
            "comparison": asdict(self.comparison) if self.comparison else None,
        }

    def metric_points(self) -> list[tuple[str, float, str]]:
        """``(name, value, unit)`` of what the probe function publishes."""
        points = [(names.METRIC_PROBE_FAILURES, 0.0 if self.ok else 1.0, "Count")]
        if self.comparison is not None and self.comparison.status != FIRST:
            points.append((names.METRIC_PROBE_ANSWER_CHANGED, float(self.answer_changed), "Count"))
        latency = {
            HEALTH: names.METRIC_PROBE_HEALTH_LATENCY,
            SCORE: names.METRIC_PROBE_SCORE_LATENCY,
        }
        for check in self.checks:
            if check.latency_ms is not None and check.status is not None:
                points.append((latency[check.name], check.latency_ms, "Milliseconds"))
        return points


class ScoreAnswer(Score):
    """A score as the probe reads it: an API version from before decision ids (still
    serving part of the traffic while a code release shifts it) answers without one."""

    decision_id: str | None = None


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInputError(f"not an http(s) URL of the API: {url!r}")
    return url


def check_customer_id(customer_id: str) -> str:
    """The id as the API takes it, or InvalidInputError saying why not."""
    try:
        return ScoreRequest(customer_id=customer_id).customer_id
    except ValidationError as exc:
        problem = "; ".join(error["msg"] for error in exc.errors())
        raise InvalidInputError(f"customer id {customer_id!r}: {problem}") from None


@dataclass(frozen=True)
class _Reply:
    status: int | None  # None: no HTTP answer at all
    body: dict[str, Any]
    latency_ms: float
    error: str | None = None

    def describe(self) -> str:
        if self.error:
            return self.error
        what = self.body.get("error") or self.body.get("message") or "no error code"
        message = self.body.get("message") if self.body.get("error") else None
        return f"answered {self.status} {what}" + (f": {message}" if message else "")


def _call(
    base_url: str,
    route: str,
    api_key: str | None,
    timeout: float,
    payload: Any = None,
    *,
    caller: str = PROBE_CALLER,
) -> _Reply:
    url = base_url.rstrip("/") + route
    headers = {
        "content-type": "application/json",
        "user-agent": f"{names.PROJECT}-{caller}",
        # Its decisions are recorded as the caller's, apart from the lender's.
        names.SYNTHETIC_HEADER: caller,
    }
    if api_key:
        headers[names.API_KEY_HEADER] = api_key
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked (check_url)
        url,
        data=None if payload is None else json.dumps(payload).encode(),
        method="GET" if payload is None else "POST",
        headers=headers,
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, http.client.HTTPException) as exc:  # refused, DNS, TLS, timed out
        reason = getattr(exc, "reason", None) or exc
        elapsed = (time.perf_counter() - started) * 1000
        return _Reply(None, {}, elapsed, f"{url} is unreachable: {reason}")
    elapsed = (time.perf_counter() - started) * 1000
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return _Reply(status, {}, elapsed, f"answered {status} with a body that is not JSON")
    return _Reply(status, body if isinstance(body, dict) else {"value": body}, elapsed)


def _refused(reply: _Reply) -> str | None:
    """Why the API refused the call before answering it, if it did."""
    if reply.status == 403:
        return f"{reply.describe()} (check the client API key)"
    if reply.status == 503 and reply.body.get("error") == "no_model":
        return (
            "no model is in service: bootstrap the environment (credit-risk env bootstrap) "
            "or, locally, train and promote one (credit-risk pipeline run)"
        )
    return None


def _health(reply: _Reply) -> Check:
    def failed(detail: str) -> Check:
        return Check(HEALTH, False, detail, reply.status, reply.latency_ms)

    if reply.error:
        return failed(reply.error)
    if refused := _refused(reply):
        return failed(refused)
    if reply.status != 200:
        return failed(reply.describe())
    body = reply.body
    if body.get("store_reachable") is False:
        return failed("the feature store cannot be reached")
    if body.get("snapshot_id") is None:
        return failed(
            "the feature store holds no snapshot: load one (credit-risk load; in AWS, "
            "credit-risk env bootstrap)"
        )
    if body.get("status") != "ok":
        return failed(f"the service reports itself {body.get('status')!r}: {body}")
    detail = (
        f"model {body.get('model_version')}, snapshot {body['snapshot_id']} "
        f"(features as of {body.get('features_as_of')})"
    )
    return Check(HEALTH, True, detail, reply.status, reply.latency_ms)


def _score(
    reply: _Reply, url: str, customer_id: str, snapshot_id: str | None, checked_at: str
) -> tuple[Check, Answer | None]:
    def failed(detail: str) -> tuple[Check, None]:
        return Check(SCORE, False, detail, reply.status, reply.latency_ms), None

    if reply.error:
        return failed(reply.error)
    if refused := _refused(reply):
        return failed(refused)
    if reply.status == 404 and reply.body.get("error") == "unknown_customer":
        snapshot = f" {snapshot_id}" if snapshot_id else ""
        return failed(
            f"customer {customer_id} is not in the active snapshot{snapshot}: "
            "probe a customer the feature store holds"
        )
    if reply.status != 200:
        return failed(f"customer {customer_id}: {reply.describe()}")
    try:
        score = ScoreAnswer.model_validate(reply.body)
    except ValidationError as exc:
        return failed(f"the answer is not a score: {exc.errors()[0]['msg']} ({reply.body})")
    if score.customer_id != customer_id:
        return failed(f"asked for customer {customer_id}, the answer is for {score.customer_id}")
    answer = Answer(
        url=url,
        customer_id=customer_id,
        default_probability=score.default_probability,
        decision=score.decision,
        threshold=score.threshold,
        reason_codes=tuple(reason.code for reason in score.reasons),
        model_version=score.model_version,
        features_as_of=score.features_as_of.isoformat(),
        snapshot_id=snapshot_id,
        checked_at=checked_at,
    )
    detail = (
        f"customer {customer_id}: {score.default_probability:.4f} {score.decision} "
        f"(threshold {score.threshold:g}), model {score.model_version}, "
        f"features as of {answer.features_as_of}"
    )
    return Check(SCORE, True, detail, reply.status, reply.latency_ms), answer


def run_probe(
    url: str,
    api_key: str | None,
    customer_id: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    caller: str = PROBE_CALLER,
) -> ProbeResult:
    """``GET /v1/health``, then ``POST /v1/scores`` for ``customer_id``, each within
    ``timeout`` seconds. Both run whatever the first answered: the on-call sees the
    state of both. Failures are in the result, never raised; bad arguments are.
    ``caller`` names who asks in the synthetic-caller header (a failover's check
    is recorded as its own, not as the probe's)."""
    check_url(url)
    check_customer_id(customer_id)
    if not (math.isfinite(timeout) and timeout > 0):
        raise InvalidInputError(f"the timeout must be a positive number of seconds: {timeout}")
    health_reply = _call(url, names.ROUTE_HEALTH, api_key, timeout, caller=caller)
    health = _health(health_reply)
    score_reply = _call(
        url, names.ROUTE_SCORE, api_key, timeout, {"customer_id": customer_id}, caller=caller
    )
    checked_at = datetime.now(UTC).isoformat(timespec="seconds")
    snapshot_id = health_reply.body.get("snapshot_id") if health_reply.status == 200 else None
    score, answer = _score(score_reply, url, customer_id, snapshot_id, checked_at)
    return ProbeResult(url, customer_id, (health, score), answer)


def compare_answers(previous: Answer | None, current: Answer) -> Comparison:
    """Whether ``current`` may differ from ``previous``, and whether it does.

    An answer is a function of the model version and the customer's features: while
    neither the version, the features' as-of date nor the snapshot changed (nor the
    customer or the API asked), the probability, decision, threshold and reasons must
    stay the same. When one of those changed, a change of answer is explained and
    nothing is compared."""
    if previous is None:
        return Comparison(FIRST, "no previous answer to compare with")
    moved = []
    for label, field in (
        ("API", "url"),
        ("customer", "customer_id"),
        ("model", "model_version"),
        ("features as of", "features_as_of"),
        ("snapshot", "snapshot_id"),
    ):
        before, after = getattr(previous, field), getattr(current, field)
        # A snapshot id the health call could not tell is no evidence either way.
        if before != after and None not in (before, after):
            moved.append(f"{label} {before} -> {after}")
    if moved:
        return Comparison(EXPLAINED, "not compared, a release or new data: " + "; ".join(moved))
    differences = []
    if abs(previous.default_probability - current.default_probability) > PROBABILITY_TOLERANCE:
        differences.append(
            f"default_probability {previous.default_probability} -> {current.default_probability}"
        )
    for field in ("decision", "threshold", "reason_codes"):
        before, after = getattr(previous, field), getattr(current, field)
        if before != after:
            differences.append(f"{field} {before} -> {after}")
    if differences:
        return Comparison(
            CHANGED,
            f"the answer changed with the same model {current.model_version} and snapshot "
            f"{current.snapshot_id or current.features_as_of}: " + "; ".join(differences),
        )
    return Comparison(UNCHANGED, f"same answer as first seen at {previous.checked_at}")


def read_state(uri: str) -> Answer | None:
    """The answer a previous probe kept at ``uri`` (a path or ``s3://``), None when
    there is none yet."""
    data = io.read_bytes_if_exists(uri)
    return None if data is None else Answer.from_json(data, uri)


def probe(
    url: str,
    api_key: str | None,
    customer_id: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    state_uri: str | None = None,
    replace_unreadable_state: bool = False,
) -> ProbeResult:
    """``run_probe``, its answer compared with the one kept at ``state_uri`` and kept
    there in its place (a changed answer too: one change, one alarm). A state that
    holds no probe answer is refused (a file given by mistake is never overwritten),
    or replaced when ``replace_unreadable_state`` (the probe function's own object)."""
    previous, unreadable = None, None
    if state_uri is not None:
        try:
            previous = read_state(state_uri)
        except UnreadableStateError as exc:
            if not replace_unreadable_state:
                raise
            unreadable = str(exc)
    result = run_probe(url, api_key, customer_id, timeout=timeout)
    if state_uri is None or result.answer is None:
        return result
    comparison = compare_answers(previous, result.answer)
    if unreadable:
        comparison = Comparison(FIRST, f"{unreadable}; replaced by this answer")
    # Kept when it is a new reference only: the same answer again changes nothing, and
    # rewriting it every few minutes would pile up versions in the versioned lake.
    if comparison.status != UNCHANGED:
        io.write_bytes(state_uri, result.answer.to_json())
    return replace(result, comparison=comparison)


def read_api_key(secret_id: str, *, client: Any = None) -> str:
    """The client API key kept as ``{"api_key": ...}`` in Secrets Manager (the Api
    stack's client-key secret, output ``ApiKeySecretArn``)."""
    if client is None:
        import boto3

        # The secret lives in its environment's region, which an ARN names.
        region = secret_id.split(":")[3] if secret_id.startswith("arn:") else None
        client = boto3.client("secretsmanager", region_name=region or None)
    value = client.get_secret_value(SecretId=secret_id)["SecretString"]
    try:
        key = json.loads(value)[names.API_KEY_SECRET_FIELD]
    except (ValueError, KeyError, TypeError):
        key = None
    if not isinstance(key, str) or not key:
        raise InvalidInputError(
            f"secret {secret_id} holds no API key in its {names.API_KEY_SECRET_FIELD!r} field"
        )
    return key
