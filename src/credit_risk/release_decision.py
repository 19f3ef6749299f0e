"""Every decision of a model release, in one place.

The canary release runs twice over: in AWS as ``step_functions/canary_release.asl.json``
(whose Choice states only follow the verdicts the release Lambda returns from here)
and on a laptop as ``credit_risk.local_canary``. Both gather facts (did the candidate
start, which of its alarms fired, how many requests it served) and ask ``decide``
what to do next, so the two paths cannot disagree on a release. The admissions that
keep training runs and releases from overlapping are decided here too.

Pure functions of their arguments: no clients, no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Final, Literal

from credit_risk.errors import InvalidInputError

CANARY: Final = "canary"
PROMOTE: Final = "promote"
ROLL_BACK: Final = "roll_back"
Action = Literal["canary", "promote", "roll_back"]

GO, WAIT, SKIP, REFUSE = "go", "wait", "skip", "refuse"
# How many times a waiting execution asks again (every names.ADMISSION_WAIT_SECONDS):
# a training run takes well under a day; a stack update that runs longer than an
# hour is stuck, and a release should not wait on it.
MAX_RUN_WAITS: Final = 24 * 60
MAX_RELEASE_WAITS: Final = 60


@dataclass(frozen=True)
class CanaryPolicy:
    """The canary settings of ``cdk.json`` (``canary``): traffic steps and the
    candidate requests a step must see to count as evidence."""

    steps_percent: tuple[float, ...] = (10.0, 50.0)
    min_requests: int = 5

    def __post_init__(self) -> None:
        steps = list(self.steps_percent)
        if not steps or steps != sorted(set(steps)):
            raise InvalidInputError("canary steps must be strictly increasing percentages")
        if not all(0 < step < 100 for step in steps):
            raise InvalidInputError("canary steps must lie strictly between 0 and 100")
        if self.min_requests < 1:
            raise InvalidInputError("min_requests must be positive")


@dataclass(frozen=True)
class StepCheck:
    """What one canary step showed: the candidate alarms in ALARM, the requests the
    candidate served during the step, and the aliases something other than the
    release moved meanwhile (a deploy)."""

    alarms: tuple[str, ...] = ()
    requests: int = 0
    moved: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """What the release does next: run canary step ``step_index`` at ``percent``,
    promote, or roll back; ``reason`` is what the notification says."""

    action: Action
    reason: str
    step_index: int | None = None
    percent: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _pct(percent: float) -> str:
    return f"{percent:g}%"


def decide(
    *,
    model_version: str,
    champion: str | None,
    policy: CanaryPolicy,
    started: bool = True,
    start_error: str | None = None,
    step_index: int | None = None,
    check: StepCheck | None = None,
) -> Verdict:
    """The next move of a release of ``model_version``.

    Before any traffic (``step_index`` None): a candidate that did not start rolls
    back; with no champion (an empty environment) or when the version already is the
    champion there is nothing to compare with, and it is promoted at once; otherwise
    the first step begins. After step ``step_index`` (``check`` required): any
    candidate alarm rolls back, and so do aliases moved by anything but the release
    (the step measured something else) and silence (fewer than ``min_requests``
    requests prove nothing); else the next step, or promotion after the last.
    """
    steps = policy.steps_percent
    if not started:
        return Verdict(ROLL_BACK, f"the candidate did not start: {start_error or 'unknown error'}")
    if step_index is None:
        if champion is None:
            return Verdict(
                PROMOTE, f"no champion to compare with: {model_version} is the first model"
            )
        if champion == model_version:
            return Verdict(PROMOTE, f"{model_version} is already the champion")
        return Verdict(CANARY, f"first step at {_pct(steps[0])}", 0, steps[0])
    if not 0 <= step_index < len(steps):
        raise InvalidInputError(f"step {step_index} is not one of the {len(steps)} canary steps")
    if check is None:
        raise InvalidInputError("a canary step needs its check to be judged")
    percent = steps[step_index]
    if check.moved:
        return Verdict(
            ROLL_BACK,
            f"the aliases changed during the step at {_pct(percent)}: {'; '.join(check.moved)}",
        )
    if check.alarms:
        alarms = ",".join(f'"{alarm}"' for alarm in check.alarms)
        return Verdict(ROLL_BACK, f"candidate alarms in ALARM at {_pct(percent)}: [{alarms}]")
    if check.requests < policy.min_requests:
        return Verdict(
            ROLL_BACK,
            f"the candidate served {check.requests} requests at {_pct(percent)}, "
            f"fewer than the {policy.min_requests} required",
        )
    if step_index + 1 < len(steps):
        following = steps[step_index + 1]
        return Verdict(
            CANARY, f"{_pct(percent)} passed; next {_pct(following)}", step_index + 1, following
        )
    taken = ", ".join(_pct(step) for step in steps)
    return Verdict(PROMOTE, f"every canary step passed ({taken})")


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
