"""Subcommands of the ``credit-risk`` CLI, one module each (see ``credit_risk.cli``)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import date

from credit_risk import names


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``1_000`` reads as 1000)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def iso_date(text: str) -> date:
    """An argparse type: a ``YYYY-MM-DD`` date."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from None


def market_name(text: str) -> str:
    """An argparse type: a market of cdk.json (2 to 8 lower-case letters)."""
    if not re.fullmatch(names.MARKET_PATTERN, text):
        raise argparse.ArgumentTypeError(f"a market is 2 to 8 lower-case letters, got {text!r}")
    return text


def seconds_up_to(limit: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds above 0, at most ``limit``."""

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if not 0 < value <= limit:
            raise argparse.ArgumentTypeError(
                f"a number of seconds above 0, at most {limit:g}: {text!r}"
            )
        return value

    return seconds
