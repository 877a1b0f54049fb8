"""Exceptions the engine raises for problems a user can fix (bad files, bad arguments)."""


class ModelFormatError(ValueError):
    """A model file (or checkpoint dict) that cannot be loaded; the message says what was found and why."""
