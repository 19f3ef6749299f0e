"""Subcommands of the ``credit-risk`` CLI, one module each (see ``credit_risk.cli``)."""

from __future__ import annotations

import argparse
from datetime import date


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
