"""Which model answers a customer while a model release is running.

A pure function of a keyed hash of the customer id and the release's current share
(DESIGN.md "Releases"): every customer of a release falls in one of ``BUCKETS``
buckets, and the candidate answers the buckets below the share. So

- repeated calls agree: the same customer, release and share give the same model,
  whichever function instance answers (all of them hold the same key);
- a customer moved to the candidate stays there as the share rises (10 → 50 → 100),
  because the buckets below 10% are also below 50%;
- each release draws its own customers first (the release id is hashed in), so the
  same 10% of the portfolio is not always the first to meet a new model.

The key is the environment's customer-id hash key (``service.hash_key``): without
it the buckets could be computed, and a customer's model chosen, from outside.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

BUCKETS: Final = 10_000  # shares to 0.01%
CHAMPION: Final = "champion"
CANDIDATE: Final = "candidate"
# HMACs keyed once per key (an environment has one; tests use a few).
_KEYS_KEPT: Final = 16
_KEYED: dict[bytes, hmac.HMAC] = {}


def bucket(key: bytes, release_id: str, customer_id: str) -> int:
    """The customer's bucket in ``[0, BUCKETS)`` for this release."""
    keyed = _KEYED.get(key)
    if keyed is None:
        if len(_KEYED) >= _KEYS_KEPT:
            _KEYED.clear()
        keyed = _KEYED[key] = hmac.new(key, digestmod=hashlib.sha256)
    # A copy of the keyed state: every customer of every request is assigned, and
    # keying the HMAC again each time costs as much as hashing the message.
    digest = keyed.copy()
    digest.update(f"{release_id}\x00{customer_id}".encode())
    return int.from_bytes(digest.digest()[:8], "big") % BUCKETS


def on_candidate(customer_bucket: int, percent: float) -> bool:
    """Whether the candidate answers a customer in ``customer_bucket`` at ``percent``."""
    return customer_bucket < round(percent * BUCKETS / 100)


def assign(key: bytes, release_id: str, customer_id: str, percent: float) -> str:
    """``CANDIDATE`` or ``CHAMPION``: the model that answers this customer."""
    return CANDIDATE if on_candidate(bucket(key, release_id, customer_id), percent) else CHAMPION
