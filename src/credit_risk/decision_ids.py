"""Decision ids: UUIDs version 7 (RFC 9562), whose first 48 bits are the time in ms.

Unique without coordination between Lambda instances, and in time order both as
UUIDs (PostgreSQL compares them byte by byte) and as their lower-case text (SQLite):
the decision record's primary key is also its time index, which retention deletes by.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime, timedelta

from credit_risk.errors import InvalidInputError

# Any letter case is accepted; ids are issued and recorded in lower case.
PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
_ID = re.compile(PATTERN)
# Sorts before every id: where a reading of the record from its start begins.
NIL = "00000000-0000-0000-0000-000000000000"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_BITS = 48
_VERSION_7 = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_A = (1 << 12) - 1
_RAND_B = (1 << 62) - 1


def new_ids(count: int, now_ns: int | None = None) -> list[str]:
    """``count`` fresh ids made now (or at ``now_ns``): the time, then 74 random bits."""
    millis = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    stamp = (millis & ((1 << _MS_BITS) - 1)) << 80 | _VERSION_7 | _VARIANT
    entropy = os.urandom(10 * count)
    return [
        _text(stamp | (bits >> 62 & _RAND_A) << 64 | (bits & _RAND_B))
        for bits in (int.from_bytes(entropy[i : i + 10]) for i in range(0, 10 * count, 10))
    ]


def first_id_at(moment: datetime) -> str:
    """The smallest id of ``moment``'s millisecond: every id made before it sorts lower."""
    # In whole numbers: a float timestamp times 1000 can land a millisecond short.
    millis = (moment - _EPOCH) // timedelta(milliseconds=1)
    return _text(millis << 80 | _VERSION_7 | _VARIANT)


def id_time(decision_id: str) -> datetime:
    """The time (to the millisecond) an id was made at."""
    millis = int(normalized(decision_id)[:13].replace("-", ""), 16)
    return _EPOCH + timedelta(milliseconds=millis)


def normalized(decision_id: str) -> str:
    """The id in lower case, as recorded; InvalidInputError when it is not one."""
    if not isinstance(decision_id, str) or not _ID.fullmatch(decision_id):
        raise InvalidInputError(f"{decision_id!r} is not a decision id (a UUID version 7)")
    return decision_id.lower()


def _text(value: int) -> str:
    hexa = f"{value:032x}"
    return f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"
