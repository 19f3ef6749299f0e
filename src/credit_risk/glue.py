"""What the Glue entry scripts (glue_jobs/) share: where they run, their arguments,
their Spark session. On Glue, arguments come from ``getResolvedOptions`` and the
session is Glue's; anywhere else from argparse and a local session, so a script can
be tried on a laptop."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


def on_glue() -> bool:
    try:
        import awsglue.utils  # noqa: F401  (present on Glue workers only)
    except ImportError:
        return False
    return True


def job_arguments(
    argv: Sequence[str],
    required: Sequence[str],
    optional: Sequence[str],
    parser: argparse.ArgumentParser,
) -> dict[str, str | None]:
    """The job arguments from ``argv`` (``sys.argv``: program name first); off Glue
    read with ``parser``, which declares the same names."""
    if on_glue():
        from awsglue.utils import getResolvedOptions

        # getResolvedOptions fails on any name it is asked for and does not find, so
        # optional arguments are only asked for when present.
        present = [name for name in optional if f"--{name}" in argv]
        options = getResolvedOptions(list(argv), [*required, *present])
        return {name: options.get(name) for name in (*required, *optional)}
    # Glue-only arguments (--JOB_NAME, --TempDir, ...) are not ours to refuse.
    known, _ = parser.parse_known_args(list(argv[1:]))
    return vars(known)


def spark_session(app_name: str) -> Any:
    """Glue's session on Glue, else a local one configured like it."""
    if on_glue():
        from awsglue.context import GlueContext
        from pyspark.context import SparkContext

        return GlueContext(SparkContext.getOrCreate()).spark_session
    from credit_risk.features import build_local_session

    return build_local_session(app_name)
