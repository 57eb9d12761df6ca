"""Exceptions of ldctq: one class per error kind of the Rust library, all under :class:`LdctqError`.

Each class also derives from the built-in exception a Python user would catch for that kind
(``InvalidInputError`` is a ``ValueError``, ``NotFoundError`` a ``FileNotFoundError``, ...), and
carries the library's kind name in ``kind``.
"""


class LdctqError(Exception):
    """Base class of every error raised by the ldctq library."""

    kind = "Ldctq"


class ConfigError(LdctqError, ValueError):
    """A config file (``ldctq.json``, ``ensemble.json``) is missing, unreadable or holds invalid values."""

    kind = "Config"


class CheckpointError(LdctqError, ValueError):
    """Weights do not match the model; the message lists every offending tensor."""

    kind = "Checkpoint"


class NotFoundError(LdctqError, FileNotFoundError):
    """A model folder, backbone or file could not be found."""

    kind = "NotFound"


class TokenizerError(LdctqError, ValueError):
    """The tokenizer file is unusable or a text cannot be tokenized."""

    kind = "Tokenizer"


class InvalidInputError(LdctqError, ValueError):
    """A tensor or value given by the caller is invalid (shape, dtype, NaN, range, ...)."""

    kind = "InvalidInput"


class UnsupportedError(LdctqError, NotImplementedError):
    """A dtype, device or option that this build does not support."""

    kind = "Unsupported"


class ReadError(LdctqError, OSError):
    """An image file could not be read (unknown format, truncated, malformed, ...)."""

    kind = "Read"


class MetricError(LdctqError, ValueError):
    """An evaluation metric is undefined for the given data (too few, constant, non-finite values)."""

    kind = "Metric"


class RunInterruptedError(LdctqError):
    """A long run was stopped on request."""

    kind = "Interrupted"


class IoError(LdctqError, OSError):
    """A file-system operation failed."""

    kind = "Io"


class OutOfMemoryError(LdctqError, MemoryError):
    """libtorch could not allocate host or device memory."""

    kind = "OutOfMemory"


class TorchError(LdctqError, RuntimeError):
    """libtorch reported another error (a device fault, a kernel refusing its input, ...)."""

    kind = "Torch"


#: The class of each kind of the library's ``Error`` (the Rust extension raises through this table).
BY_KIND = {
    cls.kind: cls
    for cls in (
        ConfigError,
        CheckpointError,
        NotFoundError,
        TokenizerError,
        InvalidInputError,
        UnsupportedError,
        ReadError,
        MetricError,
        RunInterruptedError,
        IoError,
        OutOfMemoryError,
        TorchError,
    )
}

__all__ = ["LdctqError", *(cls.__name__ for cls in BY_KIND.values())]
