"""Errors the library raises on purpose.

Every runtime maps them to what its user sees: the CLI to a one-line message and a
non-zero exit, the API to a JSON error with the right status code. Anything else
escaping is a bug.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydantic is not imported for an error's sake
    from pydantic import ValidationError


class CreditRiskError(Exception):
    """Base of the errors a user can act on; the message is written for them."""


class InvalidInputError(CreditRiskError):
    """The input (a file, an argument, a request) does not meet its contract."""


class ConfigurationError(CreditRiskError):
    """The environment or configuration is missing or contradicts itself."""


def validation_problems(
    exc: ValidationError, whole: str = "the file", limit: int | None = 3
) -> str:
    """A pydantic validation's first ``limit`` errors (all with None) on one line,
    ``field: why; …`` (``whole`` where the error is about the whole input)."""
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])) or whole}: {error['msg']}"
        for error in exc.errors()[:limit]
    )
