"""Credit-risk scoring: the domain library every runtime imports."""

__version__ = "0.1.0"
