"""Every decision of a model release, in one place.

The canary release runs twice over: in AWS as ``step_functions/canary_release.asl.json``
(whose Choice states only follow the verdicts the release Lambda returns from here)
and on a laptop as ``credit_risk.local_canary``. Both gather facts (did the candidate
start, which of its alarms fired, how many customers each stage saw, the release's
counts of ``credit_risk.release_metrics``) and ask ``decide`` what to do next, so the
two paths cannot disagree on a release: shadow, then canary steps, then promotion,
with every gate (``judge``) checked after every stage. The admissions that
keep training runs and releases from overlapping are decided here too.

Pure functions of their arguments: no clients, no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from credit_risk.errors import InvalidInputError
from credit_risk.release_metrics import LATENCY_BINS_MS, ReleaseCounts, json_number

SHADOW: Final = "shadow"
CANARY: Final = "canary"
PROMOTE: Final = "promote"
ROLL_BACK: Final = "roll_back"
Action = Literal["shadow", "canary", "promote", "roll_back"]

GO, WAIT, SKIP, REFUSE = "go", "wait", "skip", "refuse"
# How many times a waiting execution asks again (every names.ADMISSION_WAIT_SECONDS):
# a training run takes well under a day; a stack update that runs longer than an
# hour is stuck, and a release should not wait on it.
MAX_RUN_WAITS: Final = 24 * 60
MAX_RELEASE_WAITS: Final = 60


@dataclass(frozen=True)
class Gates:
    """The thresholds a candidate must stay within at every check (``cdk.json``
    ``model_release``). Behaviour is measured on the same customers, scored by both
    models: the approval-rate change and the swap share as fractions of them."""

    max_candidate_errors: int = 0
    # Candidate p99 scoring time over champion p99, same window (latency bins
    # double, so 2.0 allows one bin above the champion's).
    max_latency_ratio: float = 2.0
    max_approval_rate_change: float = 0.05
    max_swap_share: float = 0.10
    max_score_psi: float = 0.10

    def __post_init__(self) -> None:
        if self.max_candidate_errors < 0:
            raise InvalidInputError("max_candidate_errors must not be negative")
        if self.max_latency_ratio < 1:
            raise InvalidInputError("max_latency_ratio must be at least 1")
        for name in ("max_approval_rate_change", "max_swap_share"):
            if not 0 < getattr(self, name) <= 1:
                raise InvalidInputError(f"{name} must be a fraction in (0, 1]")
        if self.max_score_psi <= 0:
            raise InvalidInputError("max_score_psi must be positive")


# The model_release settings a policy is made of.
POLICY_SETTINGS: Final = (
    "steps_percent",
    "min_requests",
    "shadow_min_requests",
    "max_candidate_errors",
    "max_latency_ratio",
    "max_approval_rate_change",
    "max_swap_share",
    "max_score_psi",
)


@dataclass(frozen=True)
class CanaryPolicy:
    """The model release of ``cdk.json`` (``model_release``): the shadow stage's
    minimum volume, the canary steps, the candidate requests a step must see to
    count as evidence, and the gates."""

    steps_percent: tuple[float, ...] = (10.0, 50.0)
    min_requests: int = 5
    shadow_min_requests: int = 5
    gates: Gates = field(default_factory=Gates)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> CanaryPolicy:
        """The policy of ``cdk.json``'s ``model_release`` settings, as the file holds
        them or the state machine passes them on (the waits, which only the state
        machine reads, are left to it); refuses values no release could run with."""
        missing = [name for name in POLICY_SETTINGS if name not in settings]
        if missing:
            raise InvalidInputError(f"model_release lacks {', '.join(missing)}")
        try:
            return cls(
                steps_percent=tuple(float(step) for step in settings["steps_percent"]),
                min_requests=int(settings["min_requests"]),
                shadow_min_requests=int(settings["shadow_min_requests"]),
                gates=Gates(
                    max_candidate_errors=int(settings["max_candidate_errors"]),
                    max_latency_ratio=float(settings["max_latency_ratio"]),
                    max_approval_rate_change=float(settings["max_approval_rate_change"]),
                    max_swap_share=float(settings["max_swap_share"]),
                    max_score_psi=float(settings["max_score_psi"]),
                ),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"model_release: {exc}") from None

    def __post_init__(self) -> None:
        steps = list(self.steps_percent)
        if not steps or steps != sorted(set(steps)):
            raise InvalidInputError("canary steps must be strictly increasing percentages")
        if not all(0 < step < 100 for step in steps):
            raise InvalidInputError("canary steps must lie strictly between 0 and 100")
        if self.min_requests < 1 or self.shadow_min_requests < 1:
            raise InvalidInputError("min_requests and shadow_min_requests must be positive")


@dataclass(frozen=True)
class StepCheck:
    """What one stage showed: the candidate alarms in ALARM, the evidence the stage
    gathered (customers scored by both models in shadow; customers the candidate
    answered in a canary step) and the release's counts since it began."""

    alarms: tuple[str, ...] = ()
    requests: int = 0
    counts: ReleaseCounts = field(default_factory=ReleaseCounts)


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str

    def as_dict(self) -> dict:
        # A p99 in the open last latency bin, and a limit drawn from one, are
        # written null; the detail says "above" the last bound.
        return {
            **asdict(self),
            "value": json_number(self.value),
            "threshold": json_number(self.threshold),
        }


@dataclass(frozen=True)
class Verdict:
    """What the release does next: shadow, canary step ``step_index`` at
    ``percent``, promote, or roll back; ``reason`` is what the notification says,
    ``gates`` the verdict of each gate at the check that led here."""

    action: Action
    reason: str
    step_index: int | None = None
    percent: float | None = None
    gates: tuple[GateResult, ...] = ()

    def as_dict(self) -> dict:
        answer = asdict(self)
        answer["gates"] = [gate.as_dict() for gate in self.gates]
        return answer


def _p99(upper_ms: float) -> str:
    """A p99 as its latency bin bounds it: ``≤ 4 ms``, or ``above 128 ms`` in the
    open last bin."""
    if math.isfinite(upper_ms):
        return f"≤ {upper_ms:g} ms"
    return f"above {LATENCY_BINS_MS[-2]:g} ms"


def _pct(percent: float) -> str:
    return f"{percent:g}%"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def judge(check: StepCheck, gates: Gates) -> tuple[GateResult, ...]:
    """Every gate's verdict on what a stage showed."""
    counts = check.counts
    results = [
        GateResult(
            "alarms",
            not check.alarms,
            float(len(check.alarms)),
            0.0,
            "candidate alarms in ALARM: " + (", ".join(check.alarms) or "none"),
        ),
        GateResult(
            "errors",
            counts.candidate_errors <= gates.max_candidate_errors,
            float(counts.candidate_errors),
            float(gates.max_candidate_errors),
            f"{counts.candidate_errors} candidate errors (at most {gates.max_candidate_errors})",
        ),
    ]
    champion_p99 = counts.p99_ms(counts.champion_latency)
    candidate_p99 = counts.p99_ms(counts.candidate_latency)
    if champion_p99 is not None and candidate_p99 is not None:
        limit = gates.max_latency_ratio * champion_p99
        results.append(
            GateResult(
                "latency",
                # A candidate beyond the last bound is not shown fast enough, whatever
                # the champion's p99 (a limit drawn from the open bin is infinite).
                math.isfinite(candidate_p99) and candidate_p99 <= limit,
                candidate_p99,
                limit,
                f"candidate p99 {_p99(candidate_p99)} against champion p99 "
                f"{_p99(champion_p99)} (at most {gates.max_latency_ratio:g} times)",
            )
        )
    change, swaps, psi = counts.approval_rate_change, counts.swap_share, counts.score_psi
    if change is not None:
        results.append(
            GateResult(
                "approval_rate",
                abs(change) <= gates.max_approval_rate_change,
                change,
                gates.max_approval_rate_change,
                f"approval rate {_share(counts.champion_approval_rate)} → "
                f"{_share(counts.candidate_approval_rate)} on {counts.pairs} customers "
                f"(change at most ±{gates.max_approval_rate_change:.1%})",
            )
        )
    if swaps is not None:
        results.append(
            GateResult(
                "swap_set",
                swaps <= gates.max_swap_share,
                swaps,
                gates.max_swap_share,
                f"{counts.to_decline} approve→decline and {counts.to_approve} decline→approve "
                f"of {counts.pairs} ({_share(swaps)}; at most {gates.max_swap_share:.1%})",
            )
        )
    if psi is not None:
        results.append(
            GateResult(
                "score_psi",
                psi <= gates.max_score_psi,
                round(psi, 6),
                gates.max_score_psi,
                f"score PSI {psi:.4f} between the models (at most {gates.max_score_psi:g})",
            )
        )
    return tuple(results)


def decide(
    *,
    model_version: str,
    champion: str | None,
    policy: CanaryPolicy,
    started: bool = True,
    start_error: str | None = None,
    stage: str | None = None,
    step_index: int | None = None,
    check: StepCheck | None = None,
) -> Verdict:
    """The next move of a release of ``model_version``.

    Before any stage (``stage`` None): a candidate that did not start rolls back;
    with no champion (an empty environment) or when the version already is the
    champion there is nothing to compare with, and it is promoted at once; otherwise
    the shadow stage begins. After a stage (``check`` required): any failed gate
    rolls back (alarms, errors, latency, behaviour), and so does too little evidence
    (fewer than the stage's minimum requests); else the next stage: shadow → each
    canary step → promotion.
    """
    steps = policy.steps_percent
    if not started:
        return Verdict(ROLL_BACK, f"the candidate did not start: {start_error or 'unknown error'}")
    if stage is None:
        if champion is None:
            return Verdict(
                PROMOTE, f"no champion to compare with: {model_version} is the first model"
            )
        if champion == model_version:
            return Verdict(PROMOTE, f"{model_version} is already the champion")
        return Verdict(SHADOW, "shadow: the candidate scores beside the champion", None, 0.0)
    if check is None:
        raise InvalidInputError("a release stage needs its check to be judged")
    if stage == SHADOW:
        where, minimum, evidence = "in shadow", policy.shadow_min_requests, "scored by both models"
    elif stage == CANARY:
        if step_index is None or not 0 <= step_index < len(steps):
            raise InvalidInputError(f"step {step_index} is not one of the {len(steps)} steps")
        where = f"at {_pct(steps[step_index])}"
        minimum, evidence = policy.min_requests, "answered by the candidate"
    else:
        raise InvalidInputError(f"unknown release stage {stage!r}")
    results = judge(check, policy.gates)
    failed = [result for result in results if not result.passed]
    if failed:
        detail = "; ".join(f"{result.gate}: {result.detail}" for result in failed)
        return Verdict(ROLL_BACK, f"gates failed {where}: {detail}", gates=results)
    if check.requests < minimum:
        return Verdict(
            ROLL_BACK,
            f"{check.requests} customers {evidence} {where}, fewer than the {minimum} "
            "required: no evidence to go on",
            gates=results,
        )
    if stage == SHADOW:
        return Verdict(
            CANARY, f"shadow passed; first step {_pct(steps[0])}", 0, steps[0], gates=results
        )
    assert step_index is not None
    if step_index + 1 < len(steps):
        following = steps[step_index + 1]
        return Verdict(
            CANARY,
            f"{_pct(steps[step_index])} passed; next {_pct(following)}",
            step_index + 1,
            following,
            gates=results,
        )
    taken = ", ".join(_pct(step) for step in steps)
    return Verdict(PROMOTE, f"shadow and every canary step passed ({taken})", gates=results)


@dataclass(frozen=True)
class Execution:
    """A running execution of a state machine, as ListExecutions reports it."""

    name: str
    started: datetime


@dataclass(frozen=True)
class Admission:
    decision: str  # GO, WAIT, SKIP or REFUSE
    reason: str
    ahead: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _ahead(mine: Execution, running: Sequence[Execution]) -> list[Execution]:
    key = (mine.started, mine.name)
    return sorted((e for e in running if (e.started, e.name) < key), key=lambda e: e.started)


def admit_run(own: str, running: Sequence[Execution], attempt: int = 0) -> Admission:
    """Whether training run ``own`` may start, given the runs of its state machine
    that are RUNNING (``own`` among them).

    One run at a time, oldest first: with none ahead it goes; behind one it waits;
    behind two or more it is skipped, because the one already waiting reads every
    delivery (the feature job reads the whole raw zone) and will include this one.
    """
    mine = next((e for e in running if e.name == own), None)
    if mine is None:
        # The list is eventually consistent: until this run is in it, a run that
        # started a moment before may be missing too, so it asks again.
        return Admission(WAIT, f"run {own} is not listed as running yet")
    ahead = _ahead(mine, running)
    names = [e.name for e in ahead]
    if not ahead:
        return Admission(GO, "no other training run in flight")
    if len(ahead) >= 2:
        return Admission(
            SKIP,
            f"run {names[-1]} is already waiting behind {names[0]} and will read this delivery too",
            names,
        )
    if attempt >= MAX_RUN_WAITS:
        return Admission(REFUSE, f"waited {attempt} times for run {names[0]} to end", names)
    return Admission(WAIT, f"waiting for run {names[0]} to end", names)


# CloudFormation statuses of a stack that is being deployed or rolled back.
_STACK_BUSY_SUFFIX = "_IN_PROGRESS"


def admit_release(
    own: str,
    running: Sequence[Execution],
    deploy_stack_status: str | None,
    attempt: int = 0,
) -> Admission:
    """Whether model release ``own`` may begin.

    Releases never overlap: another release in flight refuses this one (it would
    patch the same stage and aliases). A code deploy in progress (the inference
    stack is being updated) makes it wait, up to ``MAX_RELEASE_WAITS`` times.
    """
    others = sorted(e.name for e in running if e.name != own)
    if others:
        return Admission(
            REFUSE, f"release {others[0]} is in progress: one model release at a time", others
        )
    if deploy_stack_status and deploy_stack_status.endswith(_STACK_BUSY_SUFFIX):
        if attempt >= MAX_RELEASE_WAITS:
            return Admission(
                REFUSE, f"the inference stack is still {deploy_stack_status} after {attempt} checks"
            )
        return Admission(WAIT, f"a code deploy is in progress (stack {deploy_stack_status})")
    return Admission(GO, "no other release or deploy in flight")
