"""Scheduled synthetic probe of the scoring API."""
