"""Registries for the tests of model promotion: empty at first, filled with copies of
the API tests' trained model under new version names, promoted by hand."""

from __future__ import annotations

from pathlib import Path

from credit_risk.registry import MODEL_FILE, Registry
from tests.integration.api.conftest import MODEL_NAME, Serving

FIRST, SECOND = "20240601T000000Z-first001", "20240701T000000Z-second02"


def publish(registry: Registry, serving: Serving, version: str, *, corrupt: bool = False) -> str:
    """Registers the API tests' trained model as ``version`` (its file damaged after
    registration when ``corrupt``)."""
    trained = Registry(serving.registry_uri, MODEL_NAME)
    model_bytes = trained.read_file(serving.version, MODEL_FILE)
    registry.publish(version, model_bytes, trained.metadata(serving.version))
    if corrupt:
        damaged = bytearray(model_bytes)
        damaged[len(damaged) // 2] ^= 0xFF
        (Path(registry.root) / MODEL_NAME / version / MODEL_FILE).write_bytes(bytes(damaged))
    return version


def promote(registry: Registry, version: str) -> None:
    # The small training set of these tests may miss a gate check; serving does not care.
    registry.promote(version, force=True)
