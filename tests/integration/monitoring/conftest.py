"""The lake, served model and feature store the monitor runs are built on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from credit_risk.store import FeatureStore, create_store
from tests.integration.api.conftest import serving  # noqa: F401 - fixture
from tests.integration.monitoring.world import AS_OF, SNAPSHOT_ID, World, make_world


@pytest.fixture
def world(tmp_path: Path, serving) -> World:  # noqa: F811 - the imported fixture
    world = make_world(tmp_path, str(tmp_path / "lake"), serving)
    world.publish_snapshot()
    return world


@pytest.fixture
def store(world: World) -> Iterator[FeatureStore]:
    """The local (SQLite) store, loaded with the snapshot the lake holds."""
    with create_store(world.settings()) as store:
        store.migrate()
        store.load_snapshot(world.snapshot, SNAPSHOT_ID, AS_OF)
        yield store
