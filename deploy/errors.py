"""Errors meant for the person at the keyboard."""


class DeployError(Exception):
    """An error whose message is for the user: printed without a traceback."""


class ConfigError(DeployError):
    """The environment's configuration is invalid; nothing was created."""
