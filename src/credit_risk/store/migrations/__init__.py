"""Versioned schema migrations, one directory of SQL files per dialect.

Files are named ``NNNN_description.sql``; a store applies those whose version is
not yet in its ``schema_migrations`` table, in order, in one transaction together
with the rows recording them, holding a lock so that concurrent migrators take
turns. A migration, once released, is never edited: a change is a new file.

Loads migrate first; so does the API's first decision write that finds no
``decisions`` table (``FeatureStore.record_decisions``), which may therefore apply
every pending migration under traffic: each must be additive and take its locks
briefly. Only a missing table sets that off, so code that needs a later change to
an existing table must ship after the load that applies it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations(dialect: str) -> list[Migration]:
    """The migrations of ``dialect`` (``postgres`` or ``sqlite``), by version."""
    found = []
    for entry in resources.files(__name__).joinpath(dialect).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name[:-4], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions for {dialect}: {versions}")
    return found


def latest_version(dialect: str) -> int:
    return max(m.version for m in migrations(dialect))
