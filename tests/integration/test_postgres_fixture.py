import psycopg
import pytest

from tests import postgres_server
from tests.postgres_server import PostgresServer


def test_the_test_server_answers_queries(postgres_url):
    with psycopg.connect(postgres_url, connect_timeout=5) as conn:
        assert conn.execute("select 1 + 1").fetchone() == (2,)


def test_a_machine_without_the_server_binaries_gets_an_error_not_a_skip(monkeypatch):
    # given: no PostgreSQL installed where the fixture looks
    monkeypatch.setattr(postgres_server.glob, "glob", lambda pattern: [])
    monkeypatch.setenv("PATH", "")
    server = PostgresServer()
    # when / then: the session fixture turns this into a failure of the run
    with pytest.raises(RuntimeError, match="make prereqs"):
        server.init()
    server.destroy()
    assert not server.root.exists()
