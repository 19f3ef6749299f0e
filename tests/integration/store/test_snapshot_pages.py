"""Reading a whole retained snapshot in keyset pages and ranges: the contract batch
scoring relies on, run against SQLite and the real PostgreSQL server alike."""

from __future__ import annotations

from itertools import pairwise

import pytest

from credit_risk.errors import InvalidInputError
from credit_risk.store import SnapshotNotFoundError
from tests.integration.store.data import AS_OF, customer_id, snapshot_table


def read_range(store, snapshot_id, after, through, limit):
    rows, last = [], after
    while page := store.snapshot_page(snapshot_id, after=last, through=through, limit=limit):
        rows += page
        last = page[-1].customer_id
    return rows


def test_pages_read_every_row_of_the_snapshot_once_in_id_order(store):
    # given
    store.load_snapshot(snapshot_table(103), "s1", AS_OF)
    # when
    rows = read_range(store, "s1", None, None, limit=10)
    # then
    assert [row.customer_id for row in rows] == [customer_id(i) for i in range(103)]
    assert rows == [store.get(customer_id(i)) for i in range(103)]


def test_a_kept_snapshot_is_read_as_it_was_loaded_while_another_is_active(store):
    # given
    store.load_snapshot(snapshot_table(20, version=1), "s1", AS_OF)
    store.load_snapshot(snapshot_table(30, version=2), "s2", AS_OF)
    # when
    kept = read_range(store, "s1", None, None, limit=7)
    # then
    assert len(kept) == 20
    assert {(row.snapshot_id, row.nb_previous_loans) for row in kept} == {("s1", 1)}
    assert store.get(customer_id(0)).snapshot_id == "s2"


@pytest.mark.parametrize(("n", "parts"), [(100, 4), (101, 4), (10, 3), (5, 8), (1, 1), (7, 7)])
def test_bounds_cut_the_snapshot_into_ranges_that_add_up_to_it(store, n, parts):
    # given
    store.load_snapshot(snapshot_table(n), "s1", AS_OF)
    # when
    cuts = store.snapshot_bounds("s1", parts)
    edges = [None, *cuts, None]
    ranges = [read_range(store, "s1", lo, hi, limit=3) for lo, hi in pairwise(edges)]
    # then
    assert len(ranges) <= parts
    assert all(ranges), "no range is empty"
    ids = [row.customer_id for part in ranges for row in part]
    assert ids == [customer_id(i) for i in range(n)]
    assert max(map(len, ranges)) - min(map(len, ranges)) <= -(-n // parts)


def test_an_unknown_or_invalid_snapshot_or_page_is_refused(store):
    store.load_snapshot(snapshot_table(5), "s1", AS_OF)

    with pytest.raises(SnapshotNotFoundError, match="nope"):
        store.snapshot_page("nope", after=None, through=None, limit=5)
    with pytest.raises(SnapshotNotFoundError, match="nope"):
        store.snapshot_bounds("nope", 2)
    with pytest.raises(InvalidInputError):
        store.snapshot_page("'; DROP TABLE x; --", after=None, through=None, limit=5)
    with pytest.raises(InvalidInputError):
        store.snapshot_page("s1", after=None, through=None, limit=0)
    with pytest.raises(InvalidInputError):
        store.snapshot_bounds("s1", 0)
