"""Exceptions the engine raises for problems a user can fix (bad files, bad arguments)."""


class ModelFormatError(ValueError):
    """A model file (or checkpoint dict) that cannot be loaded; the message says what was found and why."""


class PhotoError(ValueError):
    """A photo that cannot be read (missing, not an image, truncated, too large); the message says which and why."""


class DetectorUnavailable(RuntimeError):
    """A face detector whose package or model file is not installed; the message says what to install."""
