"""Rolling a model back in one step, with no traffic minimum.

The one rule behind ``credit-risk release rollback`` and the rollback input of the
canary-release state machine (``credit_risk.release.roll_back``):

- a release in progress is closed as rolled back: its candidate answers no one from
  the serving functions' next refresh, and the champion never changed (if the
  promotion had just changed it, that is undone too);
- with none in progress, the champion before the current one is the champion again
  (``Registry.roll_back``: each rollback steps one champion further back).

A ``rollback_id`` (the execution name in AWS) is written into the reason, so that a
retry of the same rollback finds its work done instead of stepping back twice.
"""

from __future__ import annotations

from typing import Any

from credit_risk import release_report
from credit_risk.errors import InvalidInputError
from credit_risk.registry import (
    PROMOTED,
    REPORTS_DIR,
    ROLLED_BACK,
    ConcurrentUpdateError,
    Registry,
    ReleaseState,
)

CLOSED_RELEASE, RESTORED_CHAMPION = "closed_release", "restored_champion"


def roll_back(registry: Registry, reason: str, rollback_id: str | None = None) -> dict[str, Any]:
    """Rolls back; what was done: ``did`` (closed_release or restored_champion), the
    champion now serving (``model_version``), the release concerned and its
    candidate, the version the champion was rolled back from, whether a retry found
    it ``already`` done, and the report of the release concerned when there is one."""
    marked = f"{reason} (rollback {rollback_id})" if rollback_id else reason
    state = registry.release_state()
    if rollback_id and state is not None and state.reason == marked:
        return _done(registry, CLOSED_RELEASE, registry.champion_version(), state, already=True)
    if state is not None and state.active:
        closed = close_rolled_back(registry, state.release_id, marked)
        if closed.outcome == ROLLED_BACK and closed.reason != marked:
            # Another rollback closed it first: its work, its report.
            return _done(registry, CLOSED_RELEASE, registry.champion_version(), closed)
        if closed.outcome == ROLLED_BACK:
            champion = registry.champion_version()
            release_report.finish(registry, closed, outcome=ROLLED_BACK, reason=marked)
            return _done(registry, CLOSED_RELEASE, champion, closed, already=False)
        return _after_promotion(registry, closed, marked)
    current = registry.champion()
    if rollback_id and current is not None and current.get("reason") == marked:
        return _done(registry, RESTORED_CHAMPION, current["version"], state, record=current)
    if current is None:
        raise InvalidInputError(
            f"{registry.model_name} has no champion and no release in progress to roll back"
        )
    record = registry.roll_back(marked, expected_champion=current["version"])
    return _done(
        registry, RESTORED_CHAMPION, record["version"], state, record=record, already=False
    )


def _after_promotion(registry: Registry, closed: ReleaseState, reason: str) -> dict[str, Any]:
    """The release ended otherwise (promoted) between the rollback's read and its
    close. Its candidate is stepped back from, and only it: while it is still the
    champion (another rollback may have stepped back already) and took over from an
    earlier one (a release of the champion itself changed nothing)."""
    current = registry.champion_version()
    if (
        closed.outcome == PROMOTED
        and current == closed.model_version
        and closed.champion != closed.model_version
        # A first champion is refused by the registry: there is no earlier one.
        and (record := step_back_from(registry, current, reason)) is not None
    ):
        return _done(
            registry, RESTORED_CHAMPION, record["version"], closed, record=record, already=False
        )
    return _done(registry, CLOSED_RELEASE, registry.champion_version(), closed, already=True)


def step_back_from(registry: Registry, version: str, reason: str) -> dict[str, Any] | None:
    """Makes the champion before ``version`` the champion again, if ``version`` still
    is the champion; None when another rollback stepped back from it first (the
    conditional write keeps that to one step)."""
    try:
        return registry.roll_back(reason, expected_champion=version)
    except ConcurrentUpdateError:
        if registry.champion_version() == version:
            raise
        return None


def close_rolled_back(registry: Registry, release_id: str, reason: str) -> ReleaseState:
    """Closes release ``release_id`` as rolled back, and undoes its promotion if the
    champion pointer already moved to its candidate (a promotion that failed before
    it closed the record as promoted): a release reported rolled back never leaves
    its candidate serving. A release already ended keeps its outcome."""
    closed = registry.close_release(release_id, ROLLED_BACK, reason)
    champion = registry.champion_version()
    if (
        closed.outcome == ROLLED_BACK
        and champion == closed.model_version
        and closed.champion not in (None, champion)
    ):
        step_back_from(registry, champion, reason)
    return closed


def _done(
    registry: Registry,
    did: str,
    serving: str | None,
    state: ReleaseState | None,
    *,
    already: bool = True,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    rolled_back_from = (record or {}).get("rolled_back_from")
    # The release concerned: the one closed, or the one that made the removed
    # version champion (the rollback ends that story).
    concerned = state
    if did == RESTORED_CHAMPION and (state is None or state.model_version != rolled_back_from):
        concerned = None
    answer: dict[str, Any] = {
        "did": did,
        "model_version": serving,
        "release_id": concerned.release_id if concerned else None,
        "candidate": concerned.model_version if concerned else None,
        "rolled_back_from": rolled_back_from,
        "already": already,
    }
    if concerned is not None and registry.read_report(
        concerned.model_version, concerned.release_id, release_report.HTML_FILE
    ):
        answer["report_html"] = registry.uri(
            concerned.model_version,
            f"{REPORTS_DIR}/{concerned.release_id}/{release_report.HTML_FILE}",
        )
    return answer
