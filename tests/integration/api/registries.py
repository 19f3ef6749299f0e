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


# A feature no store holds: a model that asks for it loads, and fails to score.
MISSING_FEATURE = "bureau_score"


def publish_variant(
    registry: Registry,
    serving: Serving,
    version: str,
    *,
    threshold: float | None = None,
    missing_feature: bool = False,
) -> str:
    """Registers the API tests' trained model as ``version``, with its decision
    threshold moved to ``threshold`` or, when ``missing_feature``, its last feature
    renamed to one the store does not have (it loads, and every score fails)."""
    trained = Registry(serving.registry_uri, MODEL_NAME)
    metadata = trained.metadata(serving.version)
    metadata["gate"] = {**metadata["gate"], "passed": True}
    if threshold is not None:
        metadata["threshold"] = {**metadata["threshold"], "value": threshold}
    if missing_feature:
        metadata["feature_names"] = [*metadata["feature_names"][:-1], MISSING_FEATURE]
    registry.publish(version, trained.read_file(serving.version, MODEL_FILE), metadata)
    return version
