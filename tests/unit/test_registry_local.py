"""What only the local registry does: a file lock serialises racing promotes.

The contract both backends meet is in tests/integration/model/test_registry_contract.py.
"""

from __future__ import annotations

import threading

import pytest

from credit_risk import schemas
from credit_risk.errors import InvalidInputError
from credit_risk.model import synthetic
from credit_risk.model.data import split_out_of_time, to_dataset
from credit_risk.model.train import Hyperparameters, train_model
from credit_risk.registry import ConcurrentUpdateError, Registry, new_version, sha256

METADATA = {
    "feature_names": list(schemas.FEATURE_NAMES),
    "threshold": {"value": 0.09},
    "gate": {"passed": True, "reasons": []},
}


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    table, _ = synthetic.training_features(5_000, seed=1)
    split = split_out_of_time(to_dataset(table))
    params = Hyperparameters(num_boost_round=5, early_stopping_rounds=5)
    return train_model(split.train, split.validation, params).model_bytes()


def test_of_racing_promotes_from_the_same_champion_exactly_one_wins(tmp_path, model_bytes):
    # given eight candidates and eight operators who all saw v0 serving
    registry = Registry(str(tmp_path), "credit-risk")
    for i in range(9):
        registry.publish(f"v{i}", model_bytes, METADATA)
    registry.promote("v0")
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def promote(version: str) -> None:
        start.wait()
        try:
            Registry(str(tmp_path), "credit-risk").promote(version, expected_champion="v0")
            outcomes.append(version)
        except ConcurrentUpdateError:
            outcomes.append("lost")

    # when they all promote at once
    threads = [threading.Thread(target=promote, args=(f"v{i}",)) for i in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then exactly one promote went through, and it is the champion
    winners = [o for o in outcomes if o != "lost"]
    assert len(winners) == 1
    assert outcomes.count("lost") == 7
    assert registry.champion_version() == winners[0]


def test_version_names_sort_by_time_and_name_the_model():
    from datetime import UTC, datetime

    digest = sha256(b"model")
    early = new_version(digest, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert early == f"20240102T030405Z-{digest[:8]}"
    assert early < new_version(digest, datetime(2024, 1, 2, 3, 4, 6, tzinfo=UTC))


def test_reserved_and_unsafe_file_names_are_refused(tmp_path, model_bytes):
    registry = Registry(str(tmp_path), "credit-risk")
    with pytest.raises(InvalidInputError, match="written by the registry"):
        registry.publish("v1", model_bytes, METADATA, {"metadata.json": b"{}"})
    with pytest.raises(InvalidInputError, match="invalid file name"):
        registry.publish("v2", model_bytes, METADATA, {"../x": b""})
    with pytest.raises(InvalidInputError, match="invalid model name"):
        Registry(str(tmp_path), "Bad/Name")
