"""Immutable, zero-downtime deployments on AWS: the library behind tasks.py."""

__version__ = "1.1.0"
