"""Score records: their JSON line, validation, the sinks, and reading the log back."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from credit_risk import names, schemas
from credit_risk.commands.serve import scoring_log_uri
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.monitoring.records import (
    LocalFileSink,
    ScoreRecord,
    ScoringLogScan,
    StdoutSink,
    iter_scoring_log,
    read_scoring_log,
    scan_scoring_log,
    sink_for,
)
from credit_risk.settings import Settings

DAY = date(2026, 11, 22)
REPO_ROOT = Path(__file__).resolve().parents[2]


def record(**changes: Any) -> ScoreRecord:
    base = ScoreRecord(
        request_id="c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        customer_hash="0123456789abcdef01234567",
        model_version="20261101-abc123",
        snapshot_id="run-2026-11-20",
        features_as_of=date(2026, 11, 20),
        features={
            "age": 41,
            "years_on_the_job": None,
            "nb_previous_loans": 3,
            "avg_amount_loans_previous": 15432.5,
            "flag_own_car": 1,
        },
        default_probability=0.031337,
        decision="approve",
        scored_at=datetime(2026, 11, 22, 10, 15, 3, 123456, tzinfo=UTC),
        environment="dev",
        decision_id="019ab0e5-5c1b-7d2e-8f3a-0b1c2d3e4f50",
    )
    return replace(base, **changes)


def as_dict(**changes: Any) -> dict[str, Any]:
    data = json.loads(record().to_json())
    data.update(changes)
    return data


# --- the JSON line ---------------------------------------------------------------
def test_a_record_is_one_line_of_the_contract_and_reads_back_equal():
    # Given a record
    original = record()
    # When it is written and read back
    line = original.to_json()
    data = json.loads(line)
    # Then it is one line with exactly the contract's fields
    assert "\n" not in line
    assert list(data) == [
        "record_type",
        "request_id",
        "customer_hash",
        "model_version",
        "snapshot_id",
        "features_as_of",
        "features",
        "default_probability",
        "decision",
        "scored_at",
        "environment",
        "role",
        "release_id",
        "reasons",
        "decision_id",
    ]
    assert data["record_type"] == names.SCORE_RECORD_TYPE
    assert list(data["features"]) == list(schemas.FEATURE_NAMES)
    assert data["features"]["years_on_the_job"] is None
    assert data["scored_at"] == "2026-11-22T10:15:03.123+00:00"
    assert data["features_as_of"] == "2026-11-20"
    # And it reads back as the same record (timestamps at millisecond precision)
    assert ScoreRecord.from_dict(data) == replace(
        original, scored_at=original.scored_at.replace(microsecond=123000)
    )


def test_a_record_written_before_decisions_were_recorded_reads_without_one():
    data = as_dict()
    del data["decision_id"]
    assert ScoreRecord.from_dict(data).decision_id is None


def test_timestamps_are_written_and_read_in_utc():
    paris = timezone(timedelta(hours=1))
    line = record(scored_at=datetime(2026, 11, 22, 0, 30, tzinfo=paris)).to_json()
    assert json.loads(line)["scored_at"] == "2026-11-21T23:30:00.000+00:00"
    parsed = ScoreRecord.from_dict(as_dict(scored_at="2026-11-22T00:30:00+01:00"))
    assert parsed.scored_at == datetime(2026, 11, 21, 23, 30, tzinfo=UTC)
    assert parsed.scored_at.tzinfo == UTC


def test_a_record_without_a_time_zone_cannot_be_made():
    with pytest.raises(InvalidInputError, match="time zone"):
        record(scored_at=datetime(2026, 11, 22, 10, 0))


@pytest.mark.parametrize(
    "changes",
    [
        {"default_probability": float("nan")},
        {"features": {**record().features, "avg_amount_loans_previous": float("inf")}},
    ],
)
def test_a_record_holding_nan_or_an_infinity_cannot_be_made(changes):
    # Then what no reader would take is never written
    with pytest.raises(InvalidInputError, match="finite"):
        record(**changes)


def test_a_feature_beyond_the_contract_is_kept():
    data = as_dict()
    data["features"]["new_feature"] = 2.5
    assert ScoreRecord.from_dict(data).features["new_feature"] == 2.5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"record_type": "metric"}, "record_type"),
        ({"request_id": ""}, "request_id"),
        ({"customer_hash": 42}, "customer_hash"),
        ({"model_version": None}, "model_version"),
        ({"snapshot_id": 7}, "snapshot_id"),
        ({"features_as_of": "20/11/2026"}, "features_as_of"),
        ({"features": [41, None, 3, 15432.5, 1]}, "features"),
        ({"default_probability": 1.5}, "default_probability"),
        ({"default_probability": "0.2"}, "default_probability"),
        ({"default_probability": None}, "default_probability"),
        ({"decision": "maybe"}, "decision"),
        ({"scored_at": "yesterday"}, "scored_at"),
        ({"scored_at": "2026-11-22T10:15:03"}, "UTC offset"),
        ({"environment": ""}, "environment"),
        ({"decision_id": 7}, "decision_id"),
    ],
)
def test_malformed_records_are_refused_with_the_field_named(changes, message):
    with pytest.raises(InvalidInputError, match=message):
        ScoreRecord.from_dict(as_dict(**changes))


@pytest.mark.parametrize(
    ("feature", "value"),
    [("age", True), ("age", "41"), ("age", float("nan")), ("avg_amount_loans_previous", 1e999)],
)
def test_feature_values_must_be_finite_numbers_or_null(feature, value):
    data = as_dict()
    data["features"][feature] = value
    with pytest.raises(InvalidInputError, match=feature):
        ScoreRecord.from_dict(data)


def test_every_contract_feature_must_be_present():
    data = as_dict()
    del data["features"]["flag_own_car"]
    with pytest.raises(InvalidInputError, match="missing flag_own_car"):
        ScoreRecord.from_dict(data)


@pytest.mark.parametrize("value", [None, [], "score", 3])
def test_a_record_is_a_json_object(value):
    with pytest.raises(InvalidInputError, match="JSON object"):
        ScoreRecord.from_dict(value)


# --- sinks -------------------------------------------------------------------------
def test_stdout_sink_writes_one_line_per_record():
    stream = io.StringIO()
    StdoutSink(stream).write([record(), record(decision="decline")])
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["decision"] for line in lines] == ["approve", "decline"]


def test_stdout_sink_writes_nothing_for_no_scores():
    stream = io.StringIO()
    StdoutSink(stream).write([])
    assert stream.getvalue() == ""


def test_local_sink_appends_to_the_day_of_each_score_in_a_file_of_its_process(tmp_path: Path):
    # Given a local sink and scores on either side of midnight UTC
    sink = LocalFileSink(tmp_path / "scoring-log")
    late = record(scored_at=datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC))
    early = record(scored_at=datetime(2026, 11, 22, 0, 0, 1, tzinfo=UTC))
    # When they are written in two requests
    sink.write([late, early])
    sink.write([early])
    # Then each day's folder holds this process's file, appended to
    name = f"scores-{os.getpid()}.jsonl"
    first = tmp_path / "scoring-log" / "date=2026-11-21" / name
    second = tmp_path / "scoring-log" / "date=2026-11-22" / name
    assert len(first.read_text().splitlines()) == 1
    assert len(second.read_text().splitlines()) == 2


def test_sink_for_chooses_files_when_a_folder_is_set_and_stdout_otherwise(tmp_path: Path):
    assert isinstance(sink_for(None), StdoutSink)
    assert isinstance(sink_for(""), StdoutSink)
    assert isinstance(sink_for(str(tmp_path)), LocalFileSink)


def test_a_local_sink_cannot_append_to_s3():
    with pytest.raises(ConfigurationError, match=names.ENV_SCORING_LOG_URI):
        sink_for("s3://lake/scoring-log")


# --- reading -----------------------------------------------------------------------
def write(root: Path, day: date, name: str, data: bytes) -> None:
    folder = root / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def lines(*records: ScoreRecord) -> bytes:
    return "".join(f"{r.to_json()}\n" for r in records).encode()


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def test_reads_plain_and_gzip_files_oldest_first(tmp_path: Path):
    # Given a plain file and a Firehose-like file of two gzip members
    first, second, third = (record(scored_at=at(DAY, hour)) for hour in (9, 10, 11))
    write(tmp_path, DAY, "scores-1.jsonl", lines(third))
    write(
        tmp_path,
        DAY,
        "firehose.jsonl.gz",
        gzip.compress(lines(second)) + gzip.compress(lines(first)),
    )
    # When the day is read
    records = read_scoring_log(str(tmp_path), DAY, DAY)
    # Then every record is there, in time order
    assert [r.scored_at.hour for r in records] == [9, 10, 11]


def test_other_lines_are_skipped_and_malformed_score_lines_counted(tmp_path: Path, caplog):
    # Given good records among other JSON lines, a blank line and two broken score lines
    broken = json.dumps(as_dict(decision="maybe"))
    text = b"\n".join(
        [
            lines(record()).strip(),
            b'{"level": "INFO", "message": "scored"}',
            b"",
            b"[1, 2, 3]",
            broken.encode(),
            b'{"record_type": "score", "request_id": "cut sho',
            lines(record(decision="decline")).strip(),
        ]
    )
    write(tmp_path, DAY, "scores-1.jsonl", text)
    # When the day is scanned
    scan = scan_scoring_log(str(tmp_path), DAY, DAY)
    # Then the good records are read, the broken ones counted, and a warning says so
    assert [r.decision for r in scan.records] == ["approve", "decline"]
    assert scan.malformed == 2
    assert scan.files == 1
    assert "2 malformed" in caplog.text


def test_an_unreadable_gzip_file_is_skipped_not_fatal(tmp_path: Path):
    write(tmp_path, DAY, "truncated.jsonl.gz", gzip.compress(lines(record()))[:-12])
    write(tmp_path, DAY, "scores-1.jsonl", lines(record()))
    scan = scan_scoring_log(str(tmp_path), DAY, DAY)
    assert len(scan.records) == 1
    assert [Path(f).name for f in scan.unreadable_files] == ["truncated.jsonl.gz"]


def test_the_window_is_by_scored_at_reading_the_next_day_for_late_deliveries(tmp_path: Path):
    # Given a score of the window's last day delivered after midnight, and scores around it
    before, first = DAY - timedelta(days=2), DAY - timedelta(days=1)
    write(tmp_path, before, "a.jsonl", lines(record(scored_at=at(before))))
    write(tmp_path, first, "a.jsonl", lines(record(scored_at=at(first))))
    write(
        tmp_path,
        DAY + timedelta(days=1),
        "a.jsonl",
        lines(
            record(scored_at=at(DAY, 23), request_id="late"),
            record(scored_at=at(DAY + timedelta(days=1), 0), request_id="next"),
        ),
    )
    # When the window [first, DAY] is read
    records = read_scoring_log(str(tmp_path), first, DAY)
    # Then it holds exactly the scores made within it
    assert [r.scored_at.date() for r in records] == [first, DAY]
    assert records[-1].request_id == "late"


def test_days_without_a_folder_and_a_missing_log_read_as_nothing(tmp_path: Path):
    assert read_scoring_log(str(tmp_path / "nothing-yet"), DAY, DAY) == []
    write(tmp_path, DAY, "a.jsonl", lines(record()))
    assert len(read_scoring_log(str(tmp_path) + "/", DAY - timedelta(days=5), DAY)) == 1


def test_hidden_and_marker_files_are_not_read(tmp_path: Path):
    write(tmp_path, DAY, "_SUCCESS", b"not json")
    write(tmp_path, DAY, ".a.jsonl.crc", b"\x00\x01")
    assert scan_scoring_log(str(tmp_path), DAY, DAY).malformed == 0


def test_a_window_ending_before_it_starts_is_refused(tmp_path: Path):
    with pytest.raises(InvalidInputError, match="before it starts"):
        read_scoring_log(str(tmp_path), DAY, DAY - timedelta(days=1))


def test_a_stream_reads_one_release_file_by_file_until_its_deadline(tmp_path: Path):
    # Given a day of two files, scores of a release among others
    ours = [record(release_id="r-1", request_id=f"ours-{n}") for n in range(3)]
    write(tmp_path, DAY, "a.jsonl.gz", gzip.compress(lines(ours[0], record(), ours[1])))
    write(tmp_path, DAY, "b.jsonl", lines(record(release_id="r-2"), ours[2]))
    # When the release's records are streamed, then read again with no time left
    scan = ScoringLogScan()
    streamed = list(iter_scoring_log(str(tmp_path), DAY, DAY, scan=scan, release_id="r-1"))
    late = ScoringLogScan()
    nothing = list(iter_scoring_log(str(tmp_path), DAY, DAY, scan=late, deadline=0.0))
    # Then only its records come, in file order, and the late read says it stopped
    assert [r.request_id for r in streamed] == ["ours-0", "ours-1", "ours-2"]
    assert (scan.files, scan.finished, scan.out_of_time) == (2, True, False)
    assert nothing == []
    assert (late.finished, late.out_of_time) == (False, True)


def test_a_reader_that_stops_early_leaves_the_rest_unread(tmp_path: Path):
    write(tmp_path, DAY, "a.jsonl", lines(record(request_id="first")))
    write(tmp_path, DAY, "b.jsonl", lines(record(request_id="second")))
    scan = ScoringLogScan()

    stream = iter_scoring_log(str(tmp_path), DAY, DAY, scan=scan)
    first = next(stream)
    stream.close()

    assert first.request_id == "first"
    assert (scan.files, scan.finished) == (1, False)


def test_the_release_function_reads_the_scoring_log_without_pyarrow(tmp_path: Path):
    # Given a scoring log, and an interpreter where importing pyarrow fails, as in
    # the inference image the release function runs
    write(tmp_path, DAY, "a.jsonl.gz", gzip.compress(lines(record(), record())))
    code = (
        "import sys; sys.modules['pyarrow'] = None; import lambdas.release.handler; "
        "from datetime import date; "
        "from credit_risk.monitoring.records import read_scoring_log; "
        f"print(len(read_scoring_log({str(tmp_path)!r}, date(2026, 11, 22), date(2026, 11, 22))))"
    )
    # When its handler is imported and the log read
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT
    )
    # Then both records are read
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "2"


def test_what_the_local_sink_writes_reads_back(tmp_path: Path):
    sink = LocalFileSink(tmp_path)
    written = [record(scored_at=at(DAY, hour), request_id=f"r{hour}") for hour in (8, 9)]
    sink.write(written)
    assert read_scoring_log(str(tmp_path), DAY, DAY) == [
        replace(r, scored_at=r.scored_at.replace(microsecond=0)) for r in written
    ]


# --- where `credit-risk serve` writes --------------------------------------------
def test_serve_logs_under_the_lake_unless_told_otherwise(tmp_path: Path):
    lake = str(tmp_path / "lake")
    assert scoring_log_uri(Settings(lake_uri=lake)) == f"{lake}/scoring-log"
    chosen = Settings(lake_uri=lake, scoring_log_uri=f"{tmp_path}/elsewhere/")
    assert scoring_log_uri(chosen) == f"{tmp_path}/elsewhere"
    assert scoring_log_uri(Settings(lake_uri=lake), enabled=False) == ""


def test_serve_refuses_to_append_to_a_lake_on_s3():
    with pytest.raises(ConfigurationError, match="--no-scoring-log"):
        scoring_log_uri(Settings(lake_uri="s3://bucket/lake"))
    assert scoring_log_uri(Settings(lake_uri="s3://bucket/lake"), enabled=False) == ""
