"""The Glue jobs' entry scripts (``glue_jobs/``), imported from their files: Glue runs
them as scripts, not as modules of a package, and imported under their own names
their ``main`` does not run until a test calls it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

GLUE_JOBS = Path(__file__).resolve().parents[1] / "glue_jobs"


def load_glue_script(file_name: str) -> ModuleType:
    """A fresh copy of ``glue_jobs/<file_name>`` as a module."""
    path = GLUE_JOBS / file_name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None, path
    assert spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
