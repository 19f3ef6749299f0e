"""Whole-portfolio batch scoring: every customer of a feature snapshot, one model.

A run has three steps, the same on this machine (``credit-risk batch-score``) and in
AWS (the batch-scoring state machine, one Lambda invocation per step and range):

1. ``plan_run``: resolve the snapshot (the active one or a kept one by id) and the
   model (the champion or a named version), refuse an output that already holds
   files, and cut the snapshot into ranges of customer ids of about equal size.
2. ``score_range``: read one range in keyset pages of ``chunk_rows`` customers,
   score each page as the API scores a request (``ModelPackage.score_values`` with
   the store's values by feature name, the API's number of reasons, probabilities
   rounded as the API returns them), and append it to the range's Parquet part as
   one row group; the range's tally goes beside it (``_tallies/``). Memory stays
   that of one page whatever the snapshot's size.
3. ``finish_run``: add up the tallies into ``summary.json``, written last: a run
   folder with a summary is complete.

Customers whose stored features hold NaN or an infinity (the API answers them 422)
are not scored; the summary counts and names them.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from credit_risk import io, names, schemas
from credit_risk.batch_summary import PROBABILITY_DECIMALS, Tally
from credit_risk.errors import ConfigurationError, InvalidInputError
from credit_risk.registry import ModelNotFoundError, Registry
from credit_risk.store import CustomerFeatures, FeatureStore, SnapshotNotFoundError
from credit_risk.store.base import all_finite, feature_values

if TYPE_CHECKING:
    import pyarrow as pa

    from credit_risk.model.package import ModelPackage

ACTIVE = "ACTIVE"
DEFAULT_CHUNK_ROWS = 10_000
DEFAULT_PARTITIONS = 1
SUMMARY_FILE = "summary.json"
TALLIES_FOLDER = "_tallies"  # "_": not data for anything reading the folder as a table


@dataclass(frozen=True)
class Range:
    """Customer ids above ``after`` up to and including ``through`` (None: open)."""

    index: int
    after: str | None
    through: str | None

    @property
    def part(self) -> str:
        return f"part-{self.index:05d}.parquet"


@dataclass(frozen=True)
class BatchRun:
    """What every step of one run needs; travels as JSON between the steps in AWS."""

    run_id: str
    snapshot_id: str
    features_as_of: str
    model_name: str
    model_version: str
    threshold: float
    reasons_top_k: int
    output: str
    chunk_rows: int
    ranges: tuple[Range, ...]
    started_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRun:
        try:
            return cls(
                **{key: value for key, value in data.items() if key != "ranges"},
                ranges=tuple(Range(**item) for item in data["ranges"]),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"not a batch-scoring run: {exc}") from None


def reasons_top_k() -> int:
    """The number of reasons the API gives (its ``CREDIT_RISK_REASONS_TOP_K``)."""
    from pydantic import ValidationError

    from credit_risk.serving.service import InferenceSettings

    try:
        return InferenceSettings().reasons_top_k
    except ValidationError as exc:
        raise ConfigurationError(f"invalid environment: {exc}") from None


def default_output(lake: str, run_id: str) -> str:
    """``<lake>/batch-scores/<run_id>``: a fresh folder per run."""
    return io.join(lake, names.BATCH_SCORES_PREFIX, run_id)


def new_run_id(snapshot_id: str, now: datetime | None = None) -> str:
    """A run id that sorts by time and names the snapshot it scored."""
    now = now or datetime.now(UTC)
    # The random part keeps two runs started in the same second apart.
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}-{snapshot_id}"[:80]


def plan_run(
    store: FeatureStore,
    registry: Registry,
    *,
    output: str,
    run_id: str,
    snapshot: str = ACTIVE,
    model_version: str | None = None,
    partitions: int = DEFAULT_PARTITIONS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    top_k: int | None = None,
) -> BatchRun:
    """Resolves the snapshot and the model, checks the output and cuts the ranges."""
    if partitions < 1 or chunk_rows < 1:
        raise InvalidInputError("partitions and chunk rows must be at least 1")
    info = _snapshot(store, snapshot)
    version = model_version or registry.champion_version()
    if version is None:
        raise ModelNotFoundError(
            f"{registry.model_name} has no champion in {registry.root} yet: train and promote "
            "one (`credit-risk pipeline run`), or name a version with --model-version"
        )
    metadata = registry.metadata(version)  # an unknown version fails here, clearly
    output = output.rstrip("/")
    if _holds_files(output):
        raise InvalidInputError(
            f"the output {output} already holds files: batch scores are never overwritten; "
            "choose a new folder (the default is a fresh one per run)"
        )
    cuts = store.snapshot_bounds(info.snapshot_id, partitions)
    edges = [None, *cuts, None]
    ranges = tuple(Range(i, after, through) for i, (after, through) in enumerate(pairwise(edges)))
    return BatchRun(
        run_id=run_id,
        snapshot_id=info.snapshot_id,
        features_as_of=info.as_of.isoformat(),
        model_name=registry.model_name,
        model_version=version,
        threshold=float(metadata["threshold"]["value"]),
        reasons_top_k=top_k if top_k is not None else reasons_top_k(),
        output=output,
        chunk_rows=chunk_rows,
        ranges=ranges,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _snapshot(store: FeatureStore, snapshot: str):
    if snapshot.upper() == ACTIVE:
        active = store.active_snapshot()
        if active is None:
            raise SnapshotNotFoundError(
                "the feature store has no active snapshot: load one with `credit-risk load`"
            )
        return active
    retained = store.snapshots()
    for info in retained:
        if info.snapshot_id == snapshot:
            return info
    kept = ", ".join(info.snapshot_id for info in retained) or "none"
    raise SnapshotNotFoundError(f"no retained snapshot {snapshot!r} (retained: {kept})")


def _holds_files(output: str) -> bool:
    if io.is_s3(output):
        return bool(io.list_files(output + "/"))
    path = Path(output)
    if path.is_file():
        return True
    return path.is_dir() and any(path.iterdir())


def score_range(
    store: FeatureStore, model: ModelPackage, run: BatchRun, index: int
) -> dict[str, Any]:
    """Scores one range into its Parquet part and writes its tally; returns the tally."""
    import pyarrow.parquet as pq

    if model.version != run.model_version:
        raise InvalidInputError(
            f"run {run.run_id} scores with model {run.model_version}, not {model.version}"
        )
    part = run.ranges[index]
    started = time.perf_counter()
    tally = Tally()
    with (
        _local_file(io.join(run.output, part.part)) as path,
        pq.ParquetWriter(path, _output_schema(), compression="zstd") as writer,
    ):
        after = part.after
        while rows := store.snapshot_page(
            run.snapshot_id, after=after, through=part.through, limit=run.chunk_rows
        ):
            after = rows[-1].customer_id
            tally.customers += len(rows)
            writer.write_table(score_chunk(model, rows, run, tally))
    record = {"index": index, "part": part.part, "seconds": time.perf_counter() - started}
    record |= tally.to_dict()
    io.write_bytes(_tally_uri(run, index), json.dumps(record).encode())
    return {key: value for key, value in record.items() if key != "histogram"}


def score_chunk(
    model: ModelPackage, rows: Sequence[CustomerFeatures], run: BatchRun, tally: Tally
) -> pa.Table:
    """One page's scores as an output table, counted in ``tally``."""
    import pyarrow as pa

    # The API's check: once per page, row by row only for a page that fails it.
    scorable = list(rows)
    if not all_finite(rows):
        scorable = []
        for row in rows:
            if bad := row.non_finite():
                tally.add_unscorable(row.customer_id, bad)
            else:
                scorable.append(row)
    values = [feature_values(row) for row in scorable]
    # In the API's request sizes: the model package scores a small batch from its own
    # tree arrays and a large one with XGBoost, whose float32 sums may differ in the
    # sixth decimal. Every API request is at most MAX_BATCH_SIZE customers, so scoring
    # in slices of that size gives each customer the API's answer to the last digit.
    scores = [
        score
        for start in range(0, len(values), names.MAX_BATCH_SIZE)
        for score in model.score_values(
            values[start : start + names.MAX_BATCH_SIZE],
            schemas.FEATURE_NAMES,
            top_k=run.reasons_top_k,
            as_dicts=True,
        )
    ]
    probabilities = [round(s.default_probability, PROBABILITY_DECIMALS) for s in scores]
    decisions = [s.decision for s in scores]
    tally.add_scores(probabilities, decisions)
    n = len(scorable)
    return pa.table(
        {
            "customer_id": [row.customer_id for row in scorable],
            "default_probability": probabilities,
            "decision": decisions,
            "threshold": [run.threshold] * n,
            "reasons": [s.reasons for s in scores],
            "model_version": [run.model_version] * n,
            "snapshot_id": [run.snapshot_id] * n,
            "features_as_of": [row.as_of for row in scorable],
        },
        schema=_output_schema(),
    )


def _output_schema() -> pa.Schema:
    import pyarrow as pa

    reason = pa.struct(
        [
            ("code", pa.string()),
            ("text", pa.string()),
            ("feature", pa.string()),
            ("value", pa.float64()),
            ("contribution", pa.float64()),
        ]
    )
    return pa.schema(
        [
            pa.field("customer_id", pa.string(), nullable=False),
            pa.field("default_probability", pa.float64(), nullable=False),
            pa.field("decision", pa.string(), nullable=False),
            pa.field("threshold", pa.float64(), nullable=False),
            pa.field("reasons", pa.list_(reason), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("snapshot_id", pa.string(), nullable=False),
            pa.field("features_as_of", pa.date32(), nullable=False),
        ]
    )


class _local_file:  # noqa: N801 - used as a context manager, like open()
    """A local file to write ``uri`` through: written beside it and renamed when
    ``uri`` is local, uploaded (multipart for a large part) when it is on S3. A
    failed write leaves nothing at ``uri``."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def __enter__(self) -> str:
        if io.is_s3(self.uri):
            handle, self.path = tempfile.mkstemp(suffix=".parquet")
            os.close(handle)
        else:
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
            self.path = f"{self.uri}.partial"
        return self.path

    def __exit__(self, kind: object, *rest: object) -> None:
        try:
            if kind is None:
                if io.is_s3(self.uri):
                    io.upload_file(self.path, self.uri)
                else:
                    os.replace(self.path, self.uri)
        finally:
            Path(self.path).unlink(missing_ok=True)


def _tally_uri(run: BatchRun, index: int) -> str:
    return io.join(run.output, TALLIES_FOLDER, f"{run.ranges[index].part}.json")


def _read_tally(uri: str) -> dict[str, Any] | None:
    """A range's tally record; None when the range has none (yet)."""
    data = io.read_bytes_if_exists(uri)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        raise InvalidInputError(f"{uri} is not a batch-scoring tally") from None


def finish_run(run: BatchRun) -> dict[str, Any]:
    """Adds up the ranges' tallies into the run's summary and writes it, last."""
    total, seconds = Tally(), 0.0
    for part in run.ranges:
        uri = _tally_uri(run, part.index)
        record = _read_tally(uri)
        if record is None:
            raise InvalidInputError(
                f"range {part.index} of run {run.run_id} has no tally at {uri}: it was not "
                "scored to the end"
            )
        total.merge(Tally.from_dict(record))
        seconds += float(record["seconds"])
    started = datetime.fromisoformat(run.started_at)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    summary = {
        "run_id": run.run_id,
        "snapshot_id": run.snapshot_id,
        "features_as_of": run.features_as_of,
        "model_name": run.model_name,
        "model_version": run.model_version,
        "threshold": run.threshold,
        "reasons_top_k": run.reasons_top_k,
        "output": run.output,
        "parts": [part.part for part in run.ranges],
        **total.figures(),
        "partitions": len(run.ranges),
        "chunk_rows": run.chunk_rows,
        "started_at": run.started_at,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_seconds": round(elapsed, 3),
        "scoring_seconds": round(seconds, 3),
        "customers_per_second": round(total.customers / seconds, 1) if seconds else None,
    }
    io.write_bytes(io.join(run.output, SUMMARY_FILE), json.dumps(summary, indent=2).encode())
    return summary


def run_batch(
    store: FeatureStore,
    registry: Registry,
    *,
    output: str,
    run_id: str,
    snapshot: str = ACTIVE,
    model_version: str | None = None,
    partitions: int = DEFAULT_PARTITIONS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    top_k: int | None = None,
) -> dict[str, Any]:
    """The whole run in this process: plan, every range in turn, summary."""
    run = plan_run(
        store,
        registry,
        output=output,
        run_id=run_id,
        snapshot=snapshot,
        model_version=model_version,
        partitions=partitions,
        chunk_rows=chunk_rows,
        top_k=top_k,
    )
    model = registry.load(run.model_version)
    for part in run.ranges:
        score_range(store, model, run, part.index)
    return finish_run(run)
