"""vitsearch's writing side: the encoder, safe image loading, folder scanning and the store."""

from .build import build_index
from .errors import (
    ConfigError,
    ImageLoadError,
    StoreError,
    StoreInUseError,
    StoreMismatchError,
    VitsearchError,
    WeightsUnavailableError,
)
from .report import FileFailure, IndexReport

__all__ = [
    "build_index",
    "IndexReport",
    "FileFailure",
    "VitsearchError",
    "ConfigError",
    "WeightsUnavailableError",
    "StoreMismatchError",
    "StoreInUseError",
    "StoreError",
    "ImageLoadError",
]
