"""Exception types raised by tfdc."""


class FormatError(ValueError):
    """A packed `.tflite` file is malformed, truncated, corrupted or of an
    unsupported version. Raised by every decoder path (Python and native)."""


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be found locally nor downloaded."""
