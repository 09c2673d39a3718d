"""Immutable, zero-downtime deployments on AWS: the library behind tasks.py."""
