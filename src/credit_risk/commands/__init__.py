"""Subcommands of the ``credit-risk`` CLI, one module each (see ``credit_risk.cli``)."""
