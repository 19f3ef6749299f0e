"""The feature store's contract: what every backend offers and the errors it raises.

Readers (the inference API) call :meth:`FeatureStore.get` / :meth:`FeatureStore.get_many`
on every request, so both are one round trip with a statement prepared once per
connection; nothing on that path looks at the schema. Loads write a whole snapshot
beside the active one and switch readers over in one short transaction.
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeAlias

from credit_risk import decision_ids, schemas
from credit_risk.errors import CreditRiskError, InvalidInputError

# The logical table readers query (DESIGN.md "Feature store"); in both backends it is
# a view re-pointed at the active snapshot's table in one transaction.
LOGICAL_TABLE = "customer_features"
# Longer ids cannot be in a store (the loader refuses them), so reads skip them
# without a round trip; PostgreSQL could not index much longer keys anyway.
MAX_CUSTOMER_ID_LENGTH = 256
SNAPSHOT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$")
DEFAULT_RETAINED_SNAPSHOTS = 2
# Expired decisions are deleted this many at a time: short transactions that never
# hold up the API's inserts for long.
DECISION_PURGE_BATCH = 5_000
# Columns readers get, in this order, from every backend.
READ_COLUMNS: tuple[str, ...] = (
    *(name for name, _ in schemas.SNAPSHOT_COLUMNS),
    "snapshot_id",
)


class StoreError(CreditRiskError):
    """Base of the feature store's errors."""


class StoreUnavailable(StoreError):  # noqa: N818 - the name callers catch
    """The store cannot be reached or cannot answer now; retrying later may succeed."""


class StoreNotInitialized(StoreUnavailable):
    """The store answers but its schema is missing: run ``credit-risk store migrate``."""


class SnapshotNotFoundError(StoreError):
    """No retained snapshot has this id."""


class SnapshotExistsError(StoreError):
    """A snapshot with this id was already loaded; snapshot ids are never reused."""


@dataclass(frozen=True, slots=True)
class CustomerFeatures:
    """One customer's serving features, as of the snapshot they were read from."""

    customer_id: str
    age: int | None
    years_on_the_job: int | None
    nb_previous_loans: int | None
    avg_amount_loans_previous: float | None
    flag_own_car: int | None
    as_of: date
    snapshot_id: str

    def feature_values(self) -> tuple[int | float | None, ...]:
        """The model inputs in ``schemas.FEATURE_NAMES`` order (None where missing)."""
        return tuple(getattr(self, name) for name in schemas.FEATURE_NAMES)

    def non_finite(self) -> list[str]:
        """The features holding NaN or an infinity: no number a model can score. The
        loader refuses them; a row can only hold one written by other means."""
        return [
            name
            for name, value in zip(schemas.FEATURE_NAMES, self.feature_values(), strict=True)
            if isinstance(value, float) and not math.isfinite(value)
        ]


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """A recorded decision: its key columns and the document a lookup returns
    (JSON text, ``credit_risk.serving.decisions``)."""

    decision_id: str
    decided_at: datetime
    customer_id: str
    model_version: str
    document: str
    # Our own synthetic traffic (the probe, the smoke test): listed apart.
    synthetic: bool = False


# A row's model inputs in schemas.FEATURE_NAMES order, as one C call
# (CustomerFeatures.feature_values, without its generator).
feature_values = attrgetter(*schemas.FEATURE_NAMES)


def all_finite(rows: Sequence[CustomerFeatures]) -> bool:
    """Whether the rows' feature values add up to a finite number: true when every
    value is finite, false when one is not (or, rarely, when finite values are too
    large to add up; the caller then checks each row with ``non_finite``)."""
    try:
        return math.isfinite(sum(filter(None, chain.from_iterable(map(feature_values, rows)))))
    except (TypeError, OverflowError):
        return False


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    snapshot_id: str
    as_of: date
    row_count: int
    loaded_at: datetime
    activated_at: datetime | None
    active: bool


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a load did; ``already_active`` means the same snapshot id was loaded before."""

    snapshot_id: str
    as_of: date
    row_count: int
    previous_snapshot_id: str | None
    dropped_snapshot_ids: tuple[str, ...] = ()
    load_seconds: float = 0.0
    swap_seconds: float = 0.0
    already_active: bool = False
    # Decisions deleted after the load, past their retention.
    purged_decisions: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "as_of": self.as_of.isoformat(),
            "row_count": self.row_count,
            "active_snapshot_id": self.snapshot_id,
            "previous_snapshot_id": self.previous_snapshot_id,
            "dropped_snapshot_ids": list(self.dropped_snapshot_ids),
            "load_seconds": round(self.load_seconds, 3),
            "swap_seconds": round(self.swap_seconds, 4),
            "already_active": self.already_active,
            "purged_decisions": self.purged_decisions,
        }


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """``ok`` means: reachable, schema in place and a snapshot active."""

    ok: bool
    backend: str
    schema_version: int | None = None
    active_snapshot_id: str | None = None
    latency_ms: float | None = None
    error: str | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "backend": self.backend,
            "schema_version": self.schema_version,
            "active_snapshot_id": self.active_snapshot_id,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "error": self.error,
        }


if TYPE_CHECKING:  # pyarrow is for loads only; readers (the inference image) lack it
    import pyarrow as pa

SnapshotData: TypeAlias = "pa.Table | Iterable[pa.RecordBatch]"


class FeatureStore(abc.ABC):
    """Online features by customer id; one implementation per backend."""

    backend: str = "abstract"

    @abc.abstractmethod
    def get(self, customer_id: str) -> CustomerFeatures | None:
        """The active snapshot's row for ``customer_id``; None when unknown."""

    @abc.abstractmethod
    def get_many(self, customer_ids: Sequence[str]) -> dict[str, CustomerFeatures]:
        """Rows for several ids in one round trip, keyed by id; unknown ids are absent."""

    @abc.abstractmethod
    def customer_ids(self, limit: int = 10) -> list[str]:
        """The first ``limit`` customer ids of the active snapshot, in id order: ids
        that score, for examples and smoke tests."""

    @abc.abstractmethod
    def snapshot_page(
        self, snapshot_id: str, *, after: str | None, through: str | None, limit: int
    ) -> list[CustomerFeatures]:
        """Up to ``limit`` rows of a retained snapshot (active or kept), in customer-id
        order, with ids above ``after`` and up to ``through`` (None: no bound): keyset
        pages for reading a whole snapshot in constant memory. A snapshot table never
        changes once loaded, so pages read apart add up to the snapshot."""

    @abc.abstractmethod
    def snapshot_bounds(self, snapshot_id: str, parts: int) -> list[str]:
        """At most ``parts - 1`` customer ids cutting a retained snapshot into ranges of
        about equal size, in order: range ``i`` holds the ids above cut ``i - 1`` up to
        and including cut ``i`` (the last id of the range), the first range open below
        and the last open above. Ranges and pages share the store's id order."""

    @abc.abstractmethod
    def load_snapshot(self, data: SnapshotData, snapshot_id: str, as_of: date) -> LoadResult:
        """Loads rows in ``schemas.SNAPSHOT_COLUMNS`` form as a new snapshot and activates it.

        Readers see the previous snapshot until the switch commits and the new one
        completely after; a failure at any point leaves the active snapshot untouched.
        """

    @abc.abstractmethod
    def active_snapshot(self) -> SnapshotInfo | None: ...

    @abc.abstractmethod
    def snapshots(self) -> list[SnapshotInfo]:
        """Retained snapshots, newest load first."""

    @abc.abstractmethod
    def rollback(self, snapshot_id: str) -> SnapshotInfo:
        """Makes a retained snapshot the active one again."""

    @abc.abstractmethod
    def health(self) -> StoreHealth:
        """One cheap round trip; never raises."""

    @abc.abstractmethod
    def migrate(self) -> list[int]:
        """Applies the schema migrations not applied yet; returns their versions."""

    def record_decisions(self, rows: Sequence[DecisionRow]) -> int:
        """Writes decisions, committed when this returns; writing one again is a
        no-op (a retried write never duplicates). The first write after an upgrade
        that added the table applies the migrations itself: a new API version must
        not fail every answer until the next feature load migrates the store.
        Returns how many were not recorded before."""
        if not rows:
            return 0
        try:
            return self._insert_decisions(rows)
        except StoreNotInitialized:
            self.migrate()
            return self._insert_decisions(rows)

    @abc.abstractmethod
    def _insert_decisions(self, rows: Sequence[DecisionRow]) -> int:
        """One round trip inserting ``rows``, skipping ids already recorded; how many
        it inserted."""

    def decision_document(self, decision_id: str) -> str | None:
        """The recorded document of a decision (a lower-case id); None when unknown."""
        try:
            return self._decision_document(decision_id)
        except StoreNotInitialized:  # no decision was ever recorded here
            return None

    @abc.abstractmethod
    def _decision_document(self, decision_id: str) -> str | None: ...

    def customer_decision_documents(
        self, customer_id: str, limit: int, *, include_synthetic: bool = False
    ) -> list[str]:
        """The documents of a customer's recorded decisions, newest first, at most
        ``limit``: where a dispute starts when the client kept no decision id.
        Synthetic traffic's (the probe's) only with ``include_synthetic``."""
        validate_page_limit(limit)
        if not is_storable_id(customer_id):
            return []
        try:
            return self._customer_decisions(customer_id, limit, include_synthetic)
        except StoreNotInitialized:
            return []

    @abc.abstractmethod
    def _customer_decisions(
        self, customer_id: str, limit: int, include_synthetic: bool
    ) -> list[str]: ...

    def decisions_after(self, after_id: str | None, limit: int) -> list[DecisionRow]:
        """Up to ``limit`` recorded decisions with ids above ``after_id`` (from the
        first, without one), in id order, which is time order: an export's pages."""
        validate_page_limit(limit)
        try:
            return self._decisions_after(after_id or decision_ids.NIL, limit)
        except StoreNotInitialized:  # nothing recorded yet
            return []

    @abc.abstractmethod
    def _decisions_after(self, after_id: str, limit: int) -> list[DecisionRow]: ...

    def purge_decisions(self, retention: timedelta, now: datetime | None = None) -> int:
        """Deletes the decisions made more than ``retention`` ago, a batch at a time;
        returns how many."""
        if retention <= timedelta(0):
            raise InvalidInputError(f"decisions are retained for a positive time, not {retention}")
        # Ids are in time order: every decision made before the cutoff has a lower one.
        before_id = decision_ids.first_id_at((now or datetime.now(UTC)) - retention)
        purged = 0
        try:
            while True:
                deleted = self._delete_decisions(before_id, DECISION_PURGE_BATCH)
                purged += deleted
                if deleted < DECISION_PURGE_BATCH:
                    return purged
        except StoreNotInitialized:  # nothing recorded yet
            return purged

    @abc.abstractmethod
    def _delete_decisions(self, before_id: str, limit: int) -> int:
        """Deletes up to ``limit`` decisions with ids below ``before_id``, lowest
        first; how many it did."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def is_storable_id(customer_id: object) -> bool:
    """Whether an id could be in a store at all; anything else is simply unknown.

    Ids that no load accepts (too long, NUL, not UTF-8 encodable) are answered
    without a round trip, which also keeps oversized or malformed input away from
    the database driver.
    """
    if not isinstance(customer_id, str):
        raise InvalidInputError(f"customer ids are text, got {type(customer_id).__name__}")
    if not customer_id or len(customer_id) > MAX_CUSTOMER_ID_LENGTH or "\x00" in customer_id:
        return False
    try:
        customer_id.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def storable_ids(customer_ids: Sequence[str]) -> list[str]:
    """Distinct storable ids, in first-seen order."""
    if isinstance(customer_ids, str):
        raise InvalidInputError("get_many takes a sequence of ids, not one string")
    return [cid for cid in dict.fromkeys(customer_ids) if is_storable_id(cid)]


def range_size(row_count: int, parts: int) -> int:
    """Rows per range when ``row_count`` rows are cut into ``parts`` ranges."""
    if parts < 1:
        raise InvalidInputError(f"a snapshot is cut into 1 part or more, not {parts}")
    return max(1, -(-row_count // parts))


def validate_page_limit(limit: int) -> int:
    if not isinstance(limit, int) or limit < 1:
        raise InvalidInputError(f"a page holds 1 row or more, not {limit!r}")
    return limit


def validate_snapshot_id(snapshot_id: str) -> str:
    if not isinstance(snapshot_id, str) or not SNAPSHOT_ID_PATTERN.fullmatch(snapshot_id):
        raise InvalidInputError(
            f"invalid snapshot id {snapshot_id!r}: 1-63 characters, letters, digits and "
            "'._:-', starting with a letter or digit"
        )
    return snapshot_id
