"""Errors every ``tidewater`` command may raise (kept apart from ``cli`` so that running
``python -m tidewater.cli`` and importing ``tidewater.cli`` share one class)."""


class CommandError(RuntimeError):
    """An expected failure: the message says what is wrong and how to fix it."""
