"""Whole-portfolio batch scoring: plan, score a range, finish (state machine tasks)."""
