"""Which model a scoring function serves, and when that changes.

A function version pinned to a registry version (``CREDIT_RISK_MODEL_VERSION``, set
by a model release) serves that version for its whole life. Without a pin (every
version a code release publishes) it serves the registry's champion and follows
promotions: it re-reads the champion pointer at most every ``refresh_seconds`` (one
small read per interval, not per request) and loads a champion it does not serve yet.

What fails the start, and what does not:

- a pinned version that is missing or corrupt, or a corrupt champion, raises: that
  function version never serves, the alias's Errors alarm sees it, and a model
  release rolls back on it;
- no champion yet (an empty environment) does not: ``current()`` is None and the API
  answers 503 until a model is promoted, which the next refresh picks up;
- a new champion that cannot be loaded later keeps the model in service and is
  reported to ``on_refresh_error``: a broken promotion must not take scoring down.

A function serving the champion also follows the registry's release record: while
a model release is in shadow or canary it loads the release's candidate and holds
both models (a few MB each), and the service scores with both. A candidate that
cannot be loaded is reported to ``on_candidate_error`` (the release's start
failure, which its alarm sees) and is tried again at the next refresh; the
champion serves meanwhile. The champion pointer and the release record are read
at the same refresh, so one request sees one consistent pair.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from credit_risk import names

if TYPE_CHECKING:
    from credit_risk.model.package import ModelPackage
    from credit_risk.registry import Registry, ReleaseState

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class Serving:
    """The models one request is scored with: the champion and, while a release is
    in progress, its candidate (None when it could not be loaded: ``candidate_error``)."""

    champion: ModelPackage | None
    release: ReleaseState | None = None
    candidate: ModelPackage | None = None
    candidate_error: str | None = None


class ModelSource:
    """The model of one function version: pinned, or the registry's current champion."""

    def __init__(
        self,
        registry: Registry,
        *,
        pinned_version: str | None,
        refresh_seconds: float = float(names.MODEL_REFRESH_SECONDS),
        # The wall clock: a monotonic one may not advance while Lambda keeps an
        # execution environment frozen between invocations, and an idle instance
        # would then never see the interval pass.
        clock: Clock = time.time,
        on_refresh_error: Callable[[Exception], None] | None = None,
        on_candidate_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.registry = registry
        self.pinned_version = pinned_version
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._on_refresh_error = on_refresh_error
        self._on_candidate_error = on_candidate_error
        self._release: ReleaseState | None = None
        self._candidate: ModelPackage | None = None
        self._candidate_error: str | None = None
        if pinned_version is not None:
            self._model: ModelPackage | None = registry.load(pinned_version)
        else:
            champion = registry.champion_version()
            self._model = registry.load(champion) if champion is not None else None
            self._follow_release()
        self._checked_at = clock()

    def serving(self, *, refresh: bool = False) -> Serving:
        """The champion and the release's candidate to score the next request with,
        after a refresh when one is due (or ``refresh``: the release's warm-up
        probe, which must see the record it has just written)."""
        if refresh and self.pinned_version is None:
            self._refresh()
        else:
            self.current()
        return Serving(self._model, self._release, self._candidate, self._candidate_error)

    def current(self) -> ModelPackage | None:
        """The model to serve now (None: no champion yet), after re-reading the
        champion pointer when the refresh interval has passed."""
        if self.pinned_version is None and self._clock() - self._checked_at >= self.refresh_seconds:
            self._refresh()
        return self._model

    def _refresh(self) -> None:
        self._checked_at = self._clock()
        self._follow_champion()
        self._follow_release()

    def _follow_champion(self) -> None:
        serving = self._model.version if self._model is not None else None
        try:
            champion = self.registry.champion_version()
            if champion is None or champion == serving:
                return
            model = self.registry.load(champion)  # verifies the sha256
        except Exception as exc:  # whatever failed, the model in service keeps serving
            logger.error(
                "the champion could not be loaded; still serving %s: %s",
                serving or "no model",
                exc,
            )
            if self._on_refresh_error is not None:
                self._on_refresh_error(exc)
            return
        logger.info("the champion changed: now serving %s (was %s)", champion, serving)
        self._model = model

    def _follow_release(self) -> None:
        """Loads the candidate of the release in progress (drops it once the release
        ends); a candidate that fails to load is reported and tried again next time."""
        try:
            release = self.registry.active_release()
        except Exception as exc:  # an unreadable record must not stop scoring
            logger.error("the release record could not be read: %s", exc)
            return
        if release is None:
            self._release, self._candidate, self._candidate_error = None, None, None
            return
        loaded = self._candidate is not None and self._candidate.version == release.model_version
        if not loaded:
            try:
                self._candidate, self._candidate_error = (
                    self.registry.load(release.model_version),
                    None,
                )
                logger.info(
                    "release %s: candidate %s loaded", release.release_id, release.model_version
                )
            except Exception as exc:
                self._candidate, self._candidate_error = None, str(exc)[:500]
                logger.error("the release's candidate could not be loaded: %s", exc)
                if self._on_candidate_error is not None:
                    self._on_candidate_error(exc)
        self._release = release
