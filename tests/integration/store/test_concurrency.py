"""Readers hammering the store while snapshots load and swap: they never notice."""

from __future__ import annotations

import random
import threading
import time

from tests.integration.store.data import AS_OF, customer_id, snapshot_table

CUSTOMERS = 20_000
READERS = 4
VERSION_OF = {"s1": 1, "s2": 2, "s3": 3}


class Reader(threading.Thread):
    """Reads random customers through a store of its own, as one API process would."""

    def __init__(self, target, seed: int) -> None:
        super().__init__(daemon=True)
        self.store = target.new_store()
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.reads = 0
        self.seen: list[str] = []  # snapshot ids in the order first seen
        self.problems: list[str] = []

    def check(self, rows: list) -> None:
        snapshot_ids = {row.snapshot_id for row in rows}
        if len(snapshot_ids) != 1:
            self.problems.append(f"one read mixed snapshots {sorted(snapshot_ids)}")
            return
        (snapshot_id,) = snapshot_ids
        if any(row.nb_previous_loans != VERSION_OF[snapshot_id] for row in rows):
            self.problems.append(f"rows labelled {snapshot_id} carry another snapshot's values")
        if snapshot_id not in self.seen:
            self.seen.append(snapshot_id)
        elif snapshot_id != self.seen[-1]:
            self.problems.append(f"went back to {snapshot_id} after {self.seen[-1]}")

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                ids = [customer_id(self.random.randrange(CUSTOMERS)) for _ in range(50)]
                batch = self.store.get_many(ids)
                if len(batch) != len(set(ids)):
                    self.problems.append(f"get_many lost {len(set(ids)) - len(batch)} customers")
                one = self.store.get(ids[0])
                if one is None:
                    self.problems.append(f"get lost customer {ids[0]}")
                    continue
                self.check(list(batch.values()))
                self.check([one])
                self.reads += 1
        except Exception as exc:  # any error at all is a failure of the contract
            self.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.store.close()


def wait_for_reads(readers: list[Reader], more: int) -> None:
    goals = [reader.reads + more for reader in readers]
    deadline = time.monotonic() + 60
    while any(r.reads < g and r.is_alive() for r, g in zip(readers, goals, strict=True)):
        assert time.monotonic() < deadline, "readers stalled"
        time.sleep(0.01)


def test_readers_see_one_whole_snapshot_at_a_time_during_loads_and_swaps(store, target):
    # given: a loaded snapshot and readers busy on it
    store.load_snapshot(snapshot_table(CUSTOMERS, version=1), "s1", AS_OF)
    readers = [Reader(target, seed) for seed in range(READERS)]
    for reader in readers:
        reader.start()
    seen_mid_load: list[str] = []

    def batches_read_between(table):
        """Yields the load's batches, letting the readers read after each one: they
        read while the load's transaction is open, part of the new rows written."""
        for batch in table.to_batches(max_chunksize=CUSTOMERS // 4):
            yield batch
            wait_for_reads(readers, 5)
            seen_mid_load.extend(reader.seen[-1] for reader in readers)

    try:
        wait_for_reads(readers, 20)
        # when: two more snapshots load and swap in under their feet
        store.load_snapshot(batches_read_between(snapshot_table(CUSTOMERS, version=2)), "s2", AS_OF)
        wait_for_reads(readers, 20)
        store.load_snapshot(snapshot_table(CUSTOMERS, version=3), "s3", AS_OF)
        wait_for_reads(readers, 20)
    finally:
        for reader in readers:
            reader.stop.set()
        for reader in readers:
            reader.join(timeout=30)
    # then: no error, no missing customer, no mixed snapshot, never back in time
    assert [problem for reader in readers for problem in reader.problems] == []
    assert all(reader.seen[-1] == "s3" for reader in readers)
    assert all(reader.seen[0] == "s1" for reader in readers)
    assert seen_mid_load == ["s1"] * READERS * 4  # the old snapshot, until the switch
