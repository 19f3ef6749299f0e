"""The scoring log: one JSON line per score the API returns.

A record holds what the monitor needs to judge a score later: the keyed hash of
the customer id (never the id), the model version, the snapshot and the feature
vector that were served, the probability and the decision, and when. Records
are written in one of two ways:

- in Lambda, printed to stdout, one line each: a CloudWatch Logs subscription
  (``names.SCORE_RECORD_FILTER``) hands them to Firehose, which writes them
  gzipped under ``<lake>/scoring-log/date=YYYY-MM-DD/``. Nothing on the request
  path waits for S3;
- locally (``Settings.scoring_log_uri``, what ``credit-risk serve`` sets),
  appended to ``<uri>/date=YYYY-MM-DD/scores-<pid>.jsonl``.

``iter_scoring_log`` reads both layouts, local or ``s3://``, one chunk of one file
at a time; ``scan_scoring_log`` and ``read_scoring_log`` collect what it reads.

The inference function imports this module and its image has no pyarrow (the
release function, which reads the log for its report, runs the same image), so
nothing here imports pyarrow; ``credit_risk.io`` is imported where a read begins.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import os
import sys
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import pydantic_core

from credit_risk import names, schemas
from credit_risk.errors import ConfigurationError, InvalidInputError

if TYPE_CHECKING:
    from credit_risk.settings import Settings

logger = logging.getLogger(__name__)

DECISIONS = ("approve", "decline")
# What a record is: the answer the client got, or the answer of the other model of
# a release in progress, recorded beside it and never returned (DESIGN.md
# "Releases"). Monitoring judges served records only.
SERVED, SHADOW = "served", "shadow"
ROLES = (SERVED, SHADOW)
PARTITION_KEY = "date"
_GZIP_MAGIC = b"\x1f\x8b"
# The most one decompression step of a gzip file gives at a time.
_MAX_INFLATED = 4 << 20
# Quoted back in warnings: enough to recognise a line, not a whole payload.
_MAX_QUOTED = 200
# One lock for every local sink in the process: the local server runs the live
# and the candidate function as two copies of the handler, appending to one file.
_APPEND_LOCK = threading.Lock()

FeatureValue = int | float | None


@dataclass(frozen=True)
class ScoreRecord:
    """One score as the API returned it, with the inputs it was computed from."""

    request_id: str
    customer_hash: str
    model_version: str
    snapshot_id: str | None
    features_as_of: date
    features: Mapping[str, FeatureValue]
    default_probability: float
    decision: str
    scored_at: datetime
    environment: str
    record_type: str = field(default=names.SCORE_RECORD_TYPE)
    role: str = SERVED
    # The model release the score was made under, if any.
    release_id: str | None = None
    # The reason codes of the answer, strongest first.
    reasons: tuple[str, ...] = ()
    # The recorded decision (GET /v1/decisions/{id}) this score is, or stood beside.
    decision_id: str | None = None

    def __post_init__(self) -> None:
        if self.scored_at.tzinfo is None:
            raise InvalidInputError("scored_at must carry a time zone (UTC)")
        if self.role not in ROLES:
            raise InvalidInputError(f"role must be one of {', '.join(ROLES)}")
        # What ``from_dict`` refuses cannot be written: JSON has no NaN or infinity
        # (the encoder would write them as bare constants no reader takes).
        values = (self.default_probability, *self.features.values())
        if not all(value is None or math.isfinite(value) for value in values):
            raise InvalidInputError("a score record holds only finite numbers (or null)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "record_type": self.record_type,
            "request_id": self.request_id,
            "customer_hash": self.customer_hash,
            "model_version": self.model_version,
            "snapshot_id": self.snapshot_id,
            "features_as_of": _date_text(self.features_as_of),
            "features": dict(self.features),
            "default_probability": self.default_probability,
            "decision": self.decision,
            "scored_at": _timestamp_text(self.scored_at),
            "environment": self.environment,
            "role": self.role,
            "release_id": self.release_id,
            "reasons": list(self.reasons),
            "decision_id": self.decision_id,
        }

    def to_json(self) -> str:
        """The record as one line of compact JSON, UTF-8 text as written (a missing
        value is null; a record never holds NaN or an infinity)."""
        # pydantic-core's encoder: a few times faster than json.dumps, and the API
        # writes one record per customer scored.
        return pydantic_core.to_json(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, data: Any) -> ScoreRecord:
        """The record a parsed JSON line describes; InvalidInputError when malformed."""
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"a score record is a JSON object, got {type(data).__name__}")
        if data.get("record_type") != names.SCORE_RECORD_TYPE:
            raise InvalidInputError(f"record_type is not {names.SCORE_RECORD_TYPE!r}")
        snapshot_id = data.get("snapshot_id")
        if snapshot_id is not None and not isinstance(snapshot_id, str):
            raise InvalidInputError("snapshot_id: must be text or null")
        probability = _number(data, "default_probability")
        if probability is None or not 0.0 <= probability <= 1.0:
            raise InvalidInputError("default_probability: must be a number within [0, 1]")
        decision = data.get("decision")
        if decision not in DECISIONS:
            raise InvalidInputError(f"decision: must be one of {', '.join(DECISIONS)}")
        # Records written before releases were recorded carry neither field.
        role = data.get("role", SERVED)
        if role not in ROLES:
            raise InvalidInputError(f"role: must be one of {', '.join(ROLES)}")
        release_id = data.get("release_id")
        if release_id is not None and not isinstance(release_id, str):
            raise InvalidInputError("release_id: must be text or null")
        reasons = data.get("reasons", [])
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise InvalidInputError("reasons: must be a list of reason codes")
        # Records written before decisions were recorded carry none.
        decision_id = data.get("decision_id")
        if decision_id is not None and not isinstance(decision_id, str):
            raise InvalidInputError("decision_id: must be text or null")
        return cls(
            request_id=_text(data, "request_id"),
            customer_hash=_text(data, "customer_hash"),
            model_version=_text(data, "model_version"),
            snapshot_id=snapshot_id,
            features_as_of=_date(data, "features_as_of"),
            features=_features(data.get("features")),
            default_probability=probability,
            decision=decision,
            scored_at=_timestamp(data, "scored_at"),
            environment=_text(data, "environment"),
            role=role,
            release_id=release_id,
            reasons=tuple(reasons),
            decision_id=decision_id,
        )


# The records of one request share their scored_at and mostly their as-of date:
# formatting each once per request, not once per record, is measurable in a batch.
@functools.lru_cache(maxsize=8)
def _timestamp_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


@functools.lru_cache(maxsize=8)
def _date_text(value: date) -> str:
    return value.isoformat()


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{key}: must be non-empty text")
    return value


def _number(data: Mapping[str, Any], key: str) -> FeatureValue:
    value = data.get(key)
    if value is None:
        return None
    # bool is an int in Python, never a feature value in a record.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"{key}: must be a finite number or null, got {value!r}")
    return value


def _date(data: Mapping[str, Any], key: str) -> date:
    value = data.get(key)
    try:
        return date.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{key}: must be a YYYY-MM-DD date, got {value!r}") from None


def _timestamp(data: Mapping[str, Any], key: str) -> datetime:
    value = data.get(key)
    try:
        parsed = datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{key}: must be an ISO-8601 timestamp, got {value!r}") from None
    if parsed.tzinfo is None:
        raise InvalidInputError(f"{key}: must carry a UTC offset, got {value!r}")
    return parsed.astimezone(UTC)


def _features(value: Any) -> dict[str, FeatureValue]:
    if not isinstance(value, Mapping):
        raise InvalidInputError("features: must be a JSON object")
    missing = [name for name in schemas.FEATURE_NAMES if name not in value]
    if missing:
        raise InvalidInputError(f"features: missing {', '.join(missing)}")
    # Features beyond today's contract are kept: a later model may serve more.
    return {str(name): _number(value, name) for name in value}


# --- writing -------------------------------------------------------------------
class ScoreSink(Protocol):
    """Where the records of scores go; ``write`` is called once per request."""

    def write(self, records: Sequence[ScoreRecord]) -> None: ...


class StdoutSink:
    """One line per record on stdout, which Lambda sends to CloudWatch Logs."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def write(self, records: Sequence[ScoreRecord]) -> None:
        if not records:
            return
        # Resolved per write, not kept: whatever stdout is at the time is the log.
        stream = self._stream or sys.stdout
        stream.write("".join(f"{record.to_json()}\n" for record in records))
        stream.flush()


class LocalFileSink:
    """Appends records to ``<root>/date=YYYY-MM-DD/scores-<pid>.jsonl`` (UTC date of
    ``scored_at``). One file per process: two servers never interleave lines."""

    def __init__(self, root: str | Path) -> None:
        if str(root).startswith("s3://"):
            raise ConfigurationError(
                f"the scoring log {root} is on S3, where files cannot be appended to: in AWS "
                f"leave {names.ENV_SCORING_LOG_URI} unset (records go to stdout, and Firehose "
                "delivers them to the lake), or point it at a local folder"
            )
        self.root = Path(root)

    def path_for(self, day: date) -> Path:
        return self.root / partition(day) / f"scores-{os.getpid()}.jsonl"

    def write(self, records: Sequence[ScoreRecord]) -> None:
        by_day: dict[date, list[str]] = {}
        for record in records:
            day = record.scored_at.astimezone(UTC).date()
            by_day.setdefault(day, []).append(f"{record.to_json()}\n")
        with _APPEND_LOCK:
            for day, lines in by_day.items():
                path = self.path_for(day)
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as file:
                    file.write("".join(lines))


def scoring_log_root(settings: Settings) -> str:
    """Where the scoring log lives: ``CREDIT_RISK_SCORING_LOG_URI``, else
    ``<lake>/scoring-log`` (where Firehose delivers in AWS). The local server and
    the simulator write there, the monitor reads there."""
    return settings.scoring_log_uri or f"{settings.lake}/{names.SCORING_LOG_PREFIX.rstrip('/')}"


def sink_for(scoring_log_uri: str | None) -> ScoreSink:
    """The local files under ``scoring_log_uri`` when it is set, else stdout."""
    return LocalFileSink(scoring_log_uri) if scoring_log_uri else StdoutSink()


def partition(day: date) -> str:
    """The folder of one day of the scoring log: ``date=YYYY-MM-DD``."""
    return f"{PARTITION_KEY}={day.isoformat()}"


# --- reading -------------------------------------------------------------------
@dataclass
class ScoringLogScan:
    """What a read of the scoring log found: the records and what it had to skip.
    ``iter_scoring_log`` fills in the counts as it goes, and says whether it read
    every file of its window (``finished``) or stopped at its deadline."""

    records: list[ScoreRecord] = field(default_factory=list)
    files: int = 0
    malformed: int = 0
    unreadable_files: list[str] = field(default_factory=list)
    finished: bool = False
    out_of_time: bool = False


def _days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def _gunzip(chunks: Iterable[bytes], source: str) -> Iterator[bytes]:
    """The bytes of one file, plain or gzip, decompressed as they come. Firehose
    writes concatenated gzip members: each is decompressed in turn, with the zero
    padding ``gzip`` tolerates between them. Output is bounded per step, so a
    chunk that inflates a thousandfold is still read a piece at a time."""
    chunks = iter(chunks)
    first = b""
    while len(first) < len(_GZIP_MAGIC):
        more = next(chunks, None)
        if more is None:
            break
        first += more
    if first[:2] != _GZIP_MAGIC:
        if first:
            yield first
        yield from chunks
        return
    member, fed = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16), False
    try:
        for chunk in itertools.chain((first,), chunks):
            data = chunk
            while True:
                if not fed:
                    data = data.lstrip(b"\x00")
                    if not data:
                        break
                out = member.decompress(data, _MAX_INFLATED)
                fed = True
                if out:
                    yield out
                if member.eof:
                    data = member.unused_data
                    member, fed = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16), False
                    continue
                data = member.unconsumed_tail
                # A full step may leave output inside zlib with no input left.
                if not data and len(out) < _MAX_INFLATED:
                    break
    except zlib.error as exc:
        raise InvalidInputError(f"{source} is not a readable gzip file: {exc}") from None
    if fed:
        raise InvalidInputError(f"{source} is not a readable gzip file: it ends inside a member")


def _lines(chunks: Iterable[bytes], source: str) -> Iterator[str]:
    """The text lines of one file as it is read."""
    pending = b""
    for data in _gunzip(chunks, source):
        *complete, pending = (pending + data).split(b"\n")
        for line in complete:
            yield line.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


def iter_scoring_log(
    uri: str,
    start: date,
    end: date,
    *,
    scan: ScoringLogScan | None = None,
    release_id: str | None = None,
    deadline: float | None = None,
) -> Iterator[ScoreRecord]:
    """The score records scored (UTC) from ``start`` to ``end``, both included, in
    the order the files hold them: day folder by day folder, file by file, line by
    line, with one chunk of one file in memory at a time however large the log is.

    Firehose files a record under the day it *arrived*, up to a buffering interval
    after it was scored, so the day after ``end`` is read too and every record is
    kept by its own ``scored_at``. Lines that are not score records are skipped;
    malformed score lines and unreadable files are counted, warned about and
    skipped: one bad line must not blind the monitor to a day of traffic. The
    records a file gave before it turned out damaged are kept.

    ``release_id``: only that release's records (the others are dropped before
    they are parsed in full). ``deadline``: a ``time.monotonic()`` value past which
    the read stops. ``scan`` receives the counts as the read goes, ``finished``
    once every file was read, ``out_of_time`` if the deadline stopped it; a reader
    that has what it needs simply stops iterating.
    """
    from credit_risk import io

    if end < start:
        raise InvalidInputError(f"the window ends ({end}) before it starts ({start})")
    scan = scan if scan is not None else ScoringLogScan()
    root = uri.rstrip("/")
    # The release's id as ScoreRecord.to_json writes it (compact JSON): a line
    # without this text is another release's or none, and is skipped unparsed
    # (most of a day's lines, at prod traffic).
    marker = json.dumps({"release_id": release_id}, separators=(",", ":"))[1:-1]
    for day in _days(start, end + timedelta(days=1)):
        folder = io.join(root, partition(day))
        if not io.is_s3(folder) and not Path(folder).is_dir():
            continue
        for file in io.list_files(folder):
            scan.files += 1
            try:
                for line in _lines(io.read_chunks(file), file):
                    if deadline is not None and time.monotonic() > deadline:
                        scan.out_of_time = True
                        return
                    if release_id is not None and marker not in line:
                        continue
                    record = _parse_line(line, file, scan, release_id)
                    if record is not None and start <= record.scored_at.date() <= end:
                        yield record
            except InvalidInputError as exc:
                logger.warning("skipping the rest of a scoring-log file: %s", exc)
                scan.unreadable_files.append(file)
    scan.finished = True
    if scan.malformed:
        logger.warning("skipped %d malformed score records under %s", scan.malformed, root)


def scan_scoring_log(uri: str, start: date, end: date) -> ScoringLogScan:
    """Reads every score record of ``[start, end]`` (``iter_scoring_log``) into
    memory, oldest first, with what the read skipped."""
    scan = ScoringLogScan()
    records = list(iter_scoring_log(uri, start, end, scan=scan))
    scan.records = sorted(records, key=lambda record: record.scored_at)
    return scan


def _parse_line(
    line: str, source: str, scan: ScoringLogScan, release_id: str | None = None
) -> ScoreRecord | None:
    line = line.strip()
    if not line:
        return None
    try:
        data = json.loads(line)
    except ValueError:
        # Not JSON at all: most likely a score line cut short, so it counts.
        scan.malformed += 1
        logger.debug("not JSON in %s: %s", source, line[:_MAX_QUOTED])
        return None
    if not isinstance(data, dict) or data.get("record_type") != names.SCORE_RECORD_TYPE:
        return None
    if release_id is not None and data.get("release_id") != release_id:
        return None
    try:
        return ScoreRecord.from_dict(data)
    except InvalidInputError as exc:
        scan.malformed += 1
        logger.debug("malformed score record in %s: %s", source, exc)
        return None


def served_only(records: Sequence[ScoreRecord]) -> list[ScoreRecord]:
    """The answers clients got: a release's shadow scores left out."""
    return [record for record in records if record.role == SERVED]


def read_scoring_log(uri: str, start: date, end: date) -> list[ScoreRecord]:
    """The score records of ``[start, end]`` under the scoring-log root ``uri``
    (local folder or ``s3://``), oldest first. See ``scan_scoring_log``."""
    return scan_scoring_log(uri, start, end).records
