"""Fixtures shared by the whole suite. Costly ones start on first use only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.postgres_server import PostgresServer

EVENTS_DIR = Path(__file__).parent / "events"


def create_output_stack(cloudformation: Any, stack_name: str, outputs: dict[str, str]) -> None:
    """A stack in moto holding nothing but ``outputs``: what a command that reads a
    deployed stack's outputs finds (a stack needs a resource; a topic is one moto makes)."""
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    cloudformation.create_stack(StackName=stack_name, TemplateBody=json.dumps(template))


def use_fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    """moto's stand-in credentials and ``region`` for one test: no profile of the
    machine, and so no real account, can be reached from it."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the run; fails loudly when it cannot start."""
    server = PostgresServer()
    try:
        server.init()
        server.start()
    except RuntimeError as exc:
        server.destroy()
        pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url
