"""Monitoring of the served model: what it scored, and whether it still should.

``records`` is the scoring log (one JSON line per score the API returns) and
``reference`` the training-time distributions it is compared with; the checks
(drift, invariants, skew, staleness, live quality) and the report build on both.
``simulate`` produces scoring traffic and delayed outcomes on a laptop.
"""
