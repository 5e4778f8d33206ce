"""Error types a user can catch.

Every error says what was wrong and what to do about it. They subclass the
built-in type a Python user would expect (``ValueError`` for bad input,
``FileNotFoundError`` for missing data) so ``except ValueError`` keeps working.
"""


class SlimtorchError(Exception):
    """Base class of every error slimtorch raises on purpose."""


class ConfigError(SlimtorchError, ValueError):
    """A config or recipe field has a wrong name, type or value.

    Attributes:
        field: dotted path of the offending field (e.g. ``stages[1].sparsity``).
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class DataNotFoundError(SlimtorchError, FileNotFoundError):
    """A dataset or weights file is not where it should be; the message says how to get it."""


class FormatError(SlimtorchError, ValueError):
    """A file is corrupt, truncated, of the wrong version or not of the expected format."""


class UnsupportedModelError(SlimtorchError, ValueError):
    """A transform met a layer or pattern it cannot handle; the message names the layer."""
