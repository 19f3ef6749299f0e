"""The sparse types xgboost 3.2 checks its inputs against; none of them can be made,
so no input is ever one of them and xgboost takes its dense paths."""

from __future__ import annotations

from typing import Any, NoReturn


def _absent(what: str) -> NoReturn:
    raise ModuleNotFoundError(
        f"scipy.sparse.{what}: SciPy is not installed in the inference image (see "
        "containers/inference/Dockerfile); serving scores dense rows only",
        name="scipy",
    )


class _Absent:
    def __new__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        _absent(cls.__name__)


class spmatrix(_Absent):  # noqa: N801 - SciPy's names
    pass


class sparray(_Absent):  # noqa: N801
    pass


class csr_matrix(spmatrix):  # noqa: N801
    pass


class csc_matrix(spmatrix):  # noqa: N801
    pass


class coo_matrix(spmatrix):  # noqa: N801
    pass


class csr_array(sparray):  # noqa: N801
    pass


class csc_array(sparray):  # noqa: N801
    pass


class coo_array(sparray):  # noqa: N801
    pass


def issparse(value: object) -> bool:
    return False


def vstack(*args: Any, **kwargs: Any) -> NoReturn:
    _absent("vstack")


def __getattr__(name: str) -> NoReturn:
    raise AttributeError(
        f"scipy.sparse.{name}: SciPy is not installed in the inference image (see "
        "containers/inference/Dockerfile)"
    )
