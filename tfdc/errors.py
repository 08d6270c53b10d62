"""Exception types raised by tfdc."""


class FormatError(ValueError):
    """A packed `.tflite` file is malformed, truncated, corrupted or of an
    unsupported version. Raised by every decoder path (Python and native).

    `status` names the class of error as docs/FORMAT.md §2 does:
    "not_packed" (no tfdc section: a plain or an already decoded model),
    "flatbuffer", "truncated", "version", "checksum", "too_large" or
    "corrupt" (the default: a field breaks a rule of the format).
    """

    def __init__(self, message="", status="corrupt"):
        super().__init__(message)
        self.status = status


class DatasetUnavailableError(RuntimeError):
    """A dataset could not be found locally nor downloaded."""
