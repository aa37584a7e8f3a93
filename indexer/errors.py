"""The exception tree: callers catch VitsearchError; the CLI maps each kind to an exit code."""

from __future__ import annotations

__all__ = [
    "first_line",
    "VitsearchError",
    "ConfigError",
    "WeightsUnavailableError",
    "StoreMismatchError",
    "StoreInUseError",
    "StoreError",
    "StoreMissingError",
    "ImageLoadError",
]


def first_line(error: BaseException) -> str:
    """An exception's message as one short line (library errors run to many lines)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


class VitsearchError(Exception):
    """Base class of every error vitsearch raises on purpose."""

    exit_code = 1


class ConfigError(VitsearchError):
    """A usage or configuration problem the user fixes with an argument or a file. Its message
    speaks of the argument by its Python name (`where must be one expression`, `precision='fp8'
    is not one of ...`), and `parameter` names it, so that the command line can say its flag."""

    exit_code = 2

    def __init__(self, message: str, *, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class WeightsUnavailableError(ConfigError):
    """No model weights could be had (offline with an empty cache, unreadable file)."""


class StoreMismatchError(ConfigError):
    """The store was built with another model, preprocessing or weights."""


class StoreInUseError(VitsearchError):
    """Another process holds the store for writing."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


class StoreError(VitsearchError):
    """The store is missing or unusable."""


class StoreMissingError(StoreError, ConfigError):
    """No store where one was named: fixed with --store or by building one (exit 2)."""


class ImageLoadError(VitsearchError):
    """One file could not be turned into an image; `reason` is a short category."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
