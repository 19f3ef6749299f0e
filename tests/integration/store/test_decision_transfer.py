"""The decision record moved between stores (``credit_risk.decision_transfer``): what a
failback does through the feature loaders, and ``credit-risk decisions export|import``
from a shell. Against SQLite and the real PostgreSQL server alike."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from credit_risk import decision_transfer
from credit_risk.errors import InvalidInputError
from credit_risk.store.sqlite import SqliteFeatureStore
from tests.integration.store.data import NOW
from tests.integration.store.data import decision_row as row


@pytest.fixture
def other(tmp_path: Path):
    """A second store, the other side of the move."""
    store = SqliteFeatureStore(tmp_path / "other.sqlite3")
    store.migrate()
    yield store
    store.close()


def recorded(store) -> list:
    return store.decisions_after(None, 1_000_000)


def test_an_export_imported_elsewhere_holds_every_decision_as_written(
    store, other, tmp_path, monkeypatch
):
    # Given decisions over several part files, a synthetic one among them
    monkeypatch.setattr(decision_transfer, "PART_DECISIONS", 4)
    monkeypatch.setattr(decision_transfer, "IMPORT_BATCH", 3)
    made = [row(NOW - timedelta(minutes=i), customer=f"{i:08d}") for i in range(10)]
    made[3] = replace(made[3], synthetic=True)
    store.record_decisions(made)

    # When they are exported and imported into another store
    manifest = decision_transfer.export_decisions(store, str(tmp_path / "export"))
    result = decision_transfer.import_decisions(other, str(tmp_path / "export"))

    # Then the other store holds each one as it was written
    assert (manifest.count, [part.count for part in manifest.parts]) == (10, [4, 4, 2])
    assert (result.count, result.recorded) == (10, 10)
    assert recorded(other) == recorded(store)
    assert other.decision_document(made[0].decision_id) == made[0].document
    assert other.customer_decision_documents("00000003", 10) == []


def test_an_import_into_each_backend_skips_the_decisions_it_holds(store, other, tmp_path):
    # Given an export of another store, one of whose decisions this store holds
    made = [row(NOW - timedelta(minutes=i), customer=f"{i:08d}") for i in range(5)]
    other.record_decisions(made)
    store.record_decisions(made[:1])
    decision_transfer.export_decisions(other, str(tmp_path / "export"))

    # When it is imported, twice
    first = decision_transfer.import_decisions(store, str(tmp_path / "export"))
    again = decision_transfer.import_decisions(store, str(tmp_path / "export"))

    # Then each decision is recorded once
    assert (first.count, first.recorded) == (5, 4)
    assert (again.count, again.recorded) == (5, 0)
    assert recorded(store) == recorded(other)


def test_an_export_after_an_id_holds_only_the_later_decisions(store, tmp_path):
    made = sorted(
        (row(NOW - timedelta(minutes=i), customer=f"{i:08d}") for i in range(6)),
        key=lambda decision: decision.decision_id,
    )
    store.record_decisions(made)

    manifest = decision_transfer.export_decisions(
        store, str(tmp_path / "export"), after_id=made[2].decision_id.upper()
    )

    assert (manifest.count, manifest.after_id) == (3, made[2].decision_id)
    assert manifest.last_id == made[-1].decision_id
    empty = decision_transfer.export_decisions(
        store, str(tmp_path / "none"), after_id=made[-1].decision_id
    )
    assert (empty.count, empty.parts, empty.last_id) == (0, (), None)


def test_a_document_with_unicode_line_separators_moves_whole(store, other, tmp_path):
    # Documents are JSON with non-ASCII text unescaped: U+2028, U+2029 and U+0085 are
    # no line ends in an export.
    written = row(customer="00000001")
    document = json.loads(written.document)
    document["occupation"] = "Sales\u0085staff\u2028and\u2029more"
    written = replace(written, document=json.dumps(document, ensure_ascii=False))
    store.record_decisions([written])
    decision_transfer.export_decisions(store, str(tmp_path / "export"))
    assert decision_transfer.import_decisions(other, str(tmp_path / "export")).recorded == 1
    assert other.decision_document(written.decision_id) == written.document


def test_exporting_the_same_decisions_again_writes_the_same_bytes(store, tmp_path):
    store.record_decisions([row(customer="00000001"), row(customer="00000002")])
    for folder in ("a", "b"):
        decision_transfer.export_decisions(store, str(tmp_path / folder), now=NOW)
    for name in ("part-00000.jsonl.gz", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_store_without_decisions_exports_an_empty_manifest(target, other, tmp_path):
    manifest = decision_transfer.export_decisions(target.new_store(), str(tmp_path / "export"))
    assert (manifest.count, manifest.parts) == (0, ())
    assert decision_transfer.import_decisions(other, str(tmp_path / "export")).count == 0


def _exported(store, folder: Path) -> Path:
    store.record_decisions([row(customer=f"{i:08d}") for i in range(3)])
    decision_transfer.export_decisions(store, str(folder))
    return folder / "part-00000.jsonl.gz"


def _rewrite(part: Path, change) -> None:
    lines = gzip.decompress(part.read_bytes()).decode().splitlines()
    part.write_bytes(gzip.compress(("\n".join(change(lines)) + "\n").encode()))


def _recount(manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "count": data["count"] + 1}))


def _other_document(lines: list[str]) -> list[str]:
    first, second = json.loads(lines[0]), json.loads(lines[1])
    first["document"] = second["document"]
    return [json.dumps(first), *lines[1:]]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda part: part.parent.joinpath("manifest.json").unlink(), "no decision export at"),
        (lambda part: part.unlink(), "lists part-00000.jsonl.gz, which is not there"),
        (lambda part: part.write_bytes(b"not gzip"), "is not gzipped text"),
        (lambda part: _rewrite(part, lambda lines: lines[:2]), "holds 2 decisions, its manifest"),
        (lambda part: _rewrite(part, _other_document), "the document is not decision"),
        (
            lambda part: _rewrite(
                part, lambda lines: [lines[0].replace('"decision_id":"', '"decision_id":"x')]
            ),
            "line 1 is not a decision",
        ),
        (
            lambda part: part.parent.joinpath("manifest.json").write_text("{}"),
            "not a decision export",
        ),
        (lambda part: _recount(part.parent / "manifest.json"), "not the sum of its parts"),
    ],
    ids=[
        "no manifest",
        "part missing",
        "not gzip",
        "count",
        "other document",
        "bad id",
        "manifest",
        "manifest count",
    ],
)
def test_a_damaged_export_is_refused_with_what_is_wrong(store, other, tmp_path, damage, message):
    part = _exported(other, tmp_path / "export")
    damage(part)
    with pytest.raises(InvalidInputError, match=message):
        decision_transfer.import_decisions(store, str(tmp_path / "export"))
    assert recorded(store) == []
