"""Errors of a training run that are not configuration errors (those are config.ConfigError)."""


class RunError(RuntimeError):
    """The run cannot start or continue as asked (run directory, checkpoint or data size)."""
