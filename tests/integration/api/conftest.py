"""Fixtures of the scoring API tests: a real model in a registry, its customers in a
feature store, and the inference handler configured on them through its environment.

The model is trained once per session on synthetic training features (a few
seconds); the snapshot holds one row per customer of those features, and the
customers of the sample events under ``tests/events/`` are among them.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from credit_risk import io, names, schemas
from credit_risk.local_api import LambdaContext, LocalGateway, champion_function, make_server
from credit_risk.model.pipeline import run_training
from credit_risk.model.synthetic import training_features
from credit_risk.registry import MODEL_FILE, Registry
from credit_risk.settings import Settings
from credit_risk.store import create_store
from lambdas.inference import handler as inference_handler
from tests.conftest import EVENTS_DIR
from tests.integration.store.conftest import fresh_postgres_database

MODEL_NAME = "credit-risk"
AS_OF = date(2024, 6, 1)
TRAINING_LOANS = 25_000
# The customers the sample events name; the snapshot holds them.
EVENT_CUSTOMERS = ("5008804", "5008805", "5008806", "5008807", "5008808")
HASH_KEY = "test-id-hash-key"
ENV_FALLBACK = f"{names.ENV_PREFIX}MODEL_FALLBACK_TO_CHAMPION"
ENV_HASH_KEY = f"{names.ENV_PREFIX}ID_HASH_KEY"
ENV_LOCAL_DIR = f"{names.ENV_PREFIX}LOCAL_DIR"


@dataclass(frozen=True)
class Serving:
    """What the API serves: registry versions and the customers' snapshot."""

    registry_uri: str
    version: str  # trained, promoted champion
    candidate_version: str  # the same model file published as another version
    corrupt_version: str  # its model file no longer matches the recorded sha256
    snapshot: pa.Table
    threshold: float

    @property
    def customer_ids(self) -> list[str]:
        return self.snapshot.column("customer_id").to_pylist()


def snapshot_of(training: pa.Table, as_of: date) -> pa.Table:
    """One row per customer (their latest loan's features), the event customers first."""
    frame = training.to_pandas().sort_values(["loan_date", "loan_id"])
    frame = frame.drop_duplicates("customer_id", keep="last")
    frame = frame[~frame["customer_id"].isin(EVENT_CUSTOMERS)].reset_index(drop=True)
    frame.loc[: len(EVENT_CUSTOMERS) - 1, "customer_id"] = EVENT_CUSTOMERS
    frame["as_of"] = as_of
    columns = [name for name, _ in schemas.SNAPSHOT_COLUMNS]
    return pa.Table.from_pandas(
        frame[columns], schema=io.arrow_schema(schemas.SNAPSHOT_COLUMNS), preserve_index=False
    )


@pytest.fixture(scope="session")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Serving:
    root = tmp_path_factory.mktemp("serving")
    training, _ = training_features(TRAINING_LOANS, seed=11)
    (root / "features").mkdir()
    pq.write_table(training, root / "features" / "part-0.parquet")
    registry_uri = str(root / "registry")
    result = run_training(str(root / "features"), registry_uri, MODEL_NAME)
    registry = Registry(registry_uri, MODEL_NAME)
    # Small data may miss a gate check; serving does not depend on the verdict.
    registry.promote(result.version, force=not result.gate.passed)

    model_bytes = registry.read_file(result.version, MODEL_FILE)
    metadata = registry.metadata(result.version)
    candidate, corrupt = f"{result.version}-b", f"{result.version}-corrupt"
    registry.publish(candidate, model_bytes, metadata)
    registry.publish(corrupt, model_bytes, metadata)
    corrupted = bytearray(model_bytes)
    corrupted[len(corrupted) // 2] ^= 0xFF
    (root / "registry" / MODEL_NAME / corrupt / MODEL_FILE).write_bytes(bytes(corrupted))
    return Serving(
        registry_uri=registry_uri,
        version=result.version,
        candidate_version=candidate,
        corrupt_version=corrupt,
        snapshot=snapshot_of(training, AS_OF),
        threshold=float(metadata["threshold"]["value"]),
    )


@pytest.fixture(scope="session")
def features_url(postgres_url: str, serving: Serving) -> Iterator[str]:
    """A PostgreSQL feature store (own database) holding the serving snapshot."""
    url, drop = fresh_postgres_database(postgres_url)
    with create_store(Settings(database_url=url)) as store:
        store.migrate()
        store.load_snapshot(serving.snapshot, "api-tests", AS_OF)
    yield url
    drop()


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def decision_event(decision_id: str) -> dict[str, Any]:
    """The sample decision lookup (``inference_decision``) for another id."""
    event = load_event("inference_decision")
    path = f"{names.ROUTE_DECISION}/{decision_id}"
    context = {**event["requestContext"], "path": f"/{names.API_STAGE_NAME}{path}"}
    return {
        **event,
        "path": path,
        "pathParameters": {names.ROUTE_DECISION_PARAMETER: decision_id},
        "requestContext": context,
    }


def with_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    """``event`` with another JSON body (a string is sent as is)."""
    return {**event, "body": body if isinstance(body, str) else json.dumps(body)}


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def lambda_context() -> LambdaContext:
    return LambdaContext(function_name="credit-risk-inference")


def invoke(handler: ModuleType, event: dict[str, Any]) -> Answer:
    """Calls the Lambda entry point as the runtime would and decodes its response."""
    response = handler.lambda_handler(event, lambda_context())
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(name.lower(), ", ".join(values))
    body = response.get("body")
    return Answer(response["statusCode"], json.loads(body) if body else None, headers)


Configure = Callable[..., ModuleType]


@pytest.fixture
def configure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, serving: Serving
) -> Iterator[Configure]:
    """Sets the function's environment (keyword: variable name → value, None unsets)
    and resets the handler to a cold start; returns the handler module."""

    def close_service() -> None:
        if inference_handler._service is not None:
            inference_handler._service.store.close()

    def apply(**environment: str | None) -> ModuleType:
        settings = {
            ENV_LOCAL_DIR: str(tmp_path),
            names.ENV_REGISTRY_URI: serving.registry_uri,
            names.ENV_MODEL_NAME: MODEL_NAME,
            names.ENV_MODEL_VERSION: serving.version,
            names.ENV_DATABASE_URL: None,
            ENV_FALLBACK: None,
            ENV_HASH_KEY: HASH_KEY,
            **environment,
        }
        for name, value in settings.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        close_service()
        monkeypatch.setattr(inference_handler, "_service", None)
        return inference_handler

    yield apply
    close_service()


@pytest.fixture(scope="session")
def local_dir(tmp_path_factory: pytest.TempPathFactory, serving: Serving) -> Path:
    """A local layout whose SQLite store holds the serving snapshot."""
    root = tmp_path_factory.mktemp("local")
    with create_store(Settings(local_dir=root)) as store:
        store.migrate()
        store.load_snapshot(serving.snapshot, "local-tests", AS_OF)
    return root


Serve = Callable[..., str]


@pytest.fixture
def local_deployment(monkeypatch: pytest.MonkeyPatch, local_dir: Path, serving: Serving) -> None:
    """The environment of a local deployment: the SQLite store under ``local_dir``, the
    tests' registry, the champion (no pinned version)."""
    for name, value in {
        ENV_LOCAL_DIR: str(local_dir),
        names.ENV_REGISTRY_URI: serving.registry_uri,
        names.ENV_MODEL_NAME: MODEL_NAME,
        ENV_HASH_KEY: HASH_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    for name in (names.ENV_DATABASE_URL, names.ENV_MODEL_VERSION):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def registry_copy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, local_deployment: None, serving: Serving
) -> Registry:
    """The local deployment on a copy of the tests' registry, for the tests that change
    it (releases, promotions). Only versions that passed their gate are released; the
    small training set of these tests may miss one, so the copies are marked passed."""
    root = tmp_path / "registry"
    shutil.copytree(serving.registry_uri, root)
    for version in (serving.version, serving.candidate_version, serving.corrupt_version):
        path = root / MODEL_NAME / version / "metadata.json"
        metadata = json.loads(path.read_text())
        metadata["gate"]["passed"] = True
        path.write_text(json.dumps(metadata))
    monkeypatch.setenv(names.ENV_REGISTRY_URI, str(root))
    return Registry(str(root), MODEL_NAME)


@pytest.fixture
def serve(local_deployment: None) -> Iterator[Serve]:
    """Starts the local API on a free port as `credit-risk serve` runs it: one function
    serving the registry's champion, following it and the release record (re-read on
    every request here); returns its base URL."""
    started = []

    def start(*, api_key: str | None = None) -> str:
        function = champion_function(refresh_seconds=0)
        server = make_server(LocalGateway(function, api_key=api_key), port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append((server, function))
        host, port = server.server_address[:2]
        return f"http://{host}:{port}"

    yield start
    for server, function in started:
        server.shutdown()
        server.server_close()
        function.close()
