"""Modules loaded from files outside any package: the Glue jobs' entry scripts
(``glue_jobs/``, which Glue runs as scripts) and the Lambda handlers (each function
its own copy, as a new execution environment has)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

GLUE_JOBS = Path(__file__).resolve().parents[1] / "glue_jobs"


def load_module(name: str, path: Path) -> ModuleType:
    """A fresh copy of the module at ``path``, registered under ``name`` (Pydantic
    resolves a handler's postponed annotations through ``sys.modules``). Imported,
    not run as ``__main__``: a script's ``main`` runs when a test calls it."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None, path
    assert spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_glue_script(file_name: str, name: str | None = None) -> ModuleType:
    """A fresh copy of ``glue_jobs/<file_name>``, named after the file unless ``name``
    says otherwise."""
    path = GLUE_JOBS / file_name
    return load_module(name or path.stem, path)
