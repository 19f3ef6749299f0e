"""Stored features no model can score (NaN, an infinity), written into PostgreSQL
behind the loader's back: the API answers a clear 422, never a 500, and counts
them for the alarm that asks for a repaired snapshot."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest

from credit_risk import names
from credit_risk.release_metrics import parse_emf
from credit_risk.settings import Settings
from credit_risk.store import create_store
from tests.integration.api.conftest import (  # noqa: F401 - shared fixtures
    AS_OF,
    Configure,
    Serving,
    configure,
    invoke,
    load_event,
    serving,
    with_body,
)
from tests.integration.store.conftest import fresh_postgres_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def poisoned(postgres_url: str, serving: Serving) -> Iterator[tuple[str, list[str]]]:  # noqa: F811
    """A store whose first two customers hold NaN and an infinity; the URL and them."""
    url, drop = fresh_postgres_database(postgres_url)
    with create_store(Settings(database_url=url)) as store:
        store.migrate()
        store.load_snapshot(serving.snapshot, "poisoned", AS_OF)
    nan_id, infinite_id = serving.customer_ids[:2]
    with psycopg.connect(url, autocommit=True) as conn:
        (table,) = conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'customer\\_features\\_%'"
        ).fetchone()
        for customer_id, value in ((nan_id, "NaN"), (infinite_id, "Infinity")):
            conn.execute(
                psycopg.sql.SQL(
                    "UPDATE {} SET avg_amount_loans_previous = %s::float8 WHERE customer_id = %s"
                ).format(psycopg.sql.Identifier(table)),
                (value, customer_id),
            )
    yield url, [nan_id, infinite_id]
    drop()


def test_a_customer_whose_features_are_no_numbers_gets_a_clear_422_and_is_counted(
    configure: Configure,  # noqa: F811
    serving: Serving,  # noqa: F811
    poisoned,
    capsys,
):
    url, (nan_id, infinite_id) = poisoned
    handler = configure(**{names.ENV_DATABASE_URL: url})
    healthy = serving.customer_ids[2]

    capsys.readouterr()
    single = invoke(handler, with_body(load_event("inference_score"), {"customer_id": nan_id}))
    batch = invoke(
        handler,
        with_body(load_event("inference_batch"), {"customer_ids": [healthy, infinite_id, nan_id]}),
    )
    fine = invoke(handler, with_body(load_event("inference_score"), {"customer_id": healthy}))

    for answer, affected in ((single, 1), (batch, 2)):
        assert answer.status == 422
        assert answer.body["error"] == "unscorable_features"
        assert f"of {affected} of the requested customers" in answer.body["message"]
        assert "avg_amount_loans_previous" in answer.body["message"]
        assert answer.body["request_id"]
    assert fine.status == 200
    counted = [
        value
        for value in parse_emf(capsys.readouterr().out.splitlines())
        if value.name == names.METRIC_UNSCORABLE_FEATURES
    ]
    # Once per refused request, with the alarm's dimensions exactly, counting customers
    assert [sum(v.values) for v in counted] == [1, 2]
    assert {json.dumps(dict(v.dimensions)) for v in counted} == {
        json.dumps({"service": names.SERVICE_INFERENCE})
    }
