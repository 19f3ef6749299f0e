"""Not SciPy: the inference image's stand-in for it (containers/inference/Dockerfile).

xgboost 3.2 imports ``scipy.sparse`` unconditionally, for ``isinstance`` checks on
sparse inputs, but serving only ever hands it dense numpy rows (``inplace_predict``
and a ``DMatrix`` from a float matrix). SciPy would be about half of the image's
dependencies on disk (109 MB) and of the order of 100 ms of every cold start, so the
image installs this package in its place: ``scipy.sparse`` with the sparse types
xgboost names, which nothing is an instance of, and nothing else. Whatever really
needs SciPy fails loudly: creating a sparse matrix raises ``ModuleNotFoundError``,
and every other submodule is missing.

Only the inference image has it (never the dev environment or the training image);
tests/integration/api/test_serving_without_scipy.py runs the serving path with it.
"""

STUB = True


def __getattr__(name: str) -> object:
    raise AttributeError(
        f"scipy.{name}: SciPy is not installed in the inference image (only a stand-in "
        "for xgboost's sparse-input checks is; see containers/inference/Dockerfile)"
    )
