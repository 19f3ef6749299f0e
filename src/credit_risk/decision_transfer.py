"""Moving the decision record from one store to another: an export to files, an import.

A standby region records the decisions it makes while it serves; on failback
(``credit_risk.dr``) its feature loader exports them into its lake, the runbook
copies them to the primary's, and the primary's loader imports them, so that
``GET /v1/decisions/{id}`` answers where the deployment serves again. The same pair
moves the record of a store restored from a backup (``credit-risk decisions
export|import``).

An export is a folder: gzipped JSON Lines parts, one decision a line with its key
columns and its document as written, then ``manifest.json``, written last, listing
the parts and their counts. It holds every decision of the store, or those whose ids
follow ``after_id``. An import reads what the manifest lists and nothing else,
refuses a part that is missing or holds another count, and skips the ids already
recorded: importing again records nothing twice.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from credit_risk import decision_ids, io
from credit_risk.errors import InvalidInputError, validation_problems
from credit_risk.store.base import MAX_CUSTOMER_ID_LENGTH, DecisionRow, FeatureStore

MANIFEST = "manifest.json"
# Decisions per part file (about 2 kB each as a document): what an export holds in
# memory at a time.
PART_DECISIONS = 10_000
# Decisions per insert on import: one statement each, a few MB of documents.
IMPORT_BATCH = 1_000


class ExportedDecision(BaseModel):
    """One line of a part: a ``DecisionRow``, its document as the text recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision_id: str = Field(pattern=decision_ids.PATTERN)
    decided_at: AwareDatetime
    customer_id: str = Field(min_length=1, max_length=MAX_CUSTOMER_ID_LENGTH)
    model_version: str = Field(min_length=1)
    synthetic: bool
    document: str = Field(min_length=2)


class ExportPart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(pattern=r"^part-\d{5}\.jsonl\.gz$")
    count: int = Field(ge=1)


class DecisionExport(BaseModel):
    """``manifest.json``: what an export holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exported_at: AwareDatetime
    count: int = Field(ge=0)
    parts: tuple[ExportPart, ...]
    # The decisions follow this id (none: from the first); the last one exported.
    after_id: str | None = Field(default=None, pattern=decision_ids.PATTERN)
    last_id: str | None = Field(default=None, pattern=decision_ids.PATTERN)

    @model_validator(mode="after")
    def _counts_add_up(self) -> DecisionExport:
        if self.count != sum(part.count for part in self.parts):
            raise ValueError(f"count {self.count} is not the sum of its parts' counts")
        return self

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()


@dataclass(frozen=True)
class ImportResult:
    count: int
    # Not recorded before; the others were (a second import, or a decision made here).
    recorded: int

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "recorded": self.recorded}


def export_decisions(
    store: FeatureStore,
    folder: str,
    *,
    after_id: str | None = None,
    now: datetime | None = None,
) -> DecisionExport:
    """Writes the decisions ``store`` holds (those whose ids follow ``after_id``) to
    ``folder`` (local or ``s3://``), in id order, then its manifest; returns it."""
    exported_at = (now or datetime.now(UTC)).replace(microsecond=0)
    parts: list[ExportPart] = []
    start = None if after_id is None else decision_ids.normalized(after_id)
    after = start
    while rows := store.decisions_after(after, PART_DECISIONS):
        part = ExportPart(file=f"part-{len(parts):05d}.jsonl.gz", count=len(rows))
        io.write_bytes(io.join(folder, part.file), _encode(rows))
        parts.append(part)
        after = rows[-1].decision_id
    manifest = DecisionExport(
        exported_at=exported_at,
        count=sum(part.count for part in parts),
        parts=tuple(parts),
        after_id=start,
        last_id=after if parts else None,
    )
    io.write_bytes(io.join(folder, MANIFEST), manifest.to_json())
    return manifest


def import_decisions(store: FeatureStore, folder: str) -> ImportResult:
    """Records the decisions of the export at ``folder`` that ``store`` lacks."""
    manifest = read_manifest(folder)
    recorded = 0
    for part in manifest.parts:
        where = io.join(folder, part.file)
        data = io.read_bytes_if_exists(where)
        if data is None:
            raise InvalidInputError(
                f"{io.join(folder, MANIFEST)} lists {part.file}, which is not there"
            )
        rows = _decode(data, where)
        if len(rows) != part.count:
            raise InvalidInputError(
                f"{where} holds {len(rows)} decisions, its manifest says {part.count}"
            )
        for start in range(0, len(rows), IMPORT_BATCH):
            recorded += store.record_decisions(rows[start : start + IMPORT_BATCH])
    return ImportResult(count=manifest.count, recorded=recorded)


def read_manifest(folder: str) -> DecisionExport:
    where = io.join(folder, MANIFEST)
    data = io.read_bytes_if_exists(where)
    if data is None:
        raise InvalidInputError(
            f"no decision export at {folder}: {MANIFEST} is missing (an export writes it last)"
        )
    try:
        return DecisionExport.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidInputError(
            f"{where} is not a decision export's manifest: {validation_problems(exc)}"
        ) from None


def _encode(rows: list[DecisionRow]) -> bytes:
    # The same fields by name: a DecisionRow is an ExportedDecision's content.
    lines = (ExportedDecision(**asdict(row)).model_dump_json() for row in rows)
    # No time in the header: exporting the same decisions again gives the same bytes.
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6, mtime=0)


def _decode(data: bytes, where: str) -> list[DecisionRow]:
    try:
        text = gzip.decompress(data).decode()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{where} is not gzipped text: {exc}") from None
    rows = []
    # Lines end with \n only: a document may hold U+2028 or U+0085 unescaped, which
    # str.splitlines() would also split at.
    for number, line in enumerate(text.removesuffix("\n").split("\n"), start=1):
        try:
            item = ExportedDecision.model_validate_json(line)
            document = json.loads(item.document)
        except ValidationError as exc:
            raise InvalidInputError(
                f"{where} line {number} is not a decision: {validation_problems(exc, 'the line')}"
            ) from None
        except ValueError as exc:  # the document is not JSON
            raise InvalidInputError(f"{where} line {number}: the document: {exc}") from None
        decision_id = item.decision_id.lower()
        # A line whose document is another decision's would answer a lookup wrongly.
        if not isinstance(document, dict) or document.get("decision_id") != decision_id:
            raise InvalidInputError(
                f"{where} line {number}: the document is not decision {decision_id}'s"
            )
        rows.append(DecisionRow(**{**item.model_dump(), "decision_id": decision_id}))
    return rows
