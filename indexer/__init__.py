"""vitsearch's writing side: the encoder, safe image loading, folder scanning and the store."""

from .errors import (
    ConfigError,
    ImageLoadError,
    StoreError,
    StoreInUseError,
    StoreMismatchError,
    VitsearchError,
    WeightsUnavailableError,
)
from .pipeline import FileFailure, IndexReport, build_index

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
