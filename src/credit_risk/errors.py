"""Errors the library raises on purpose.

Every runtime maps them to what its user sees: the CLI to a one-line message and a
non-zero exit, the API to a JSON error with the right status code. Anything else
escaping is a bug.
"""


class CreditRiskError(Exception):
    """Base of the errors a user can act on; the message is written for them."""


class InvalidInputError(CreditRiskError):
    """The input (a file, an argument, a request) does not meet its contract."""


class ConfigurationError(CreditRiskError):
    """The environment or configuration is missing or contradicts itself."""
