"""vitsearch's writing side: the store (store/), the model (model/), image loading (imaging/), the
Ray engine (ray/), and the ingest pipeline that scans, plans, embeds and commits (this folder).

Imports are lazy: `import vitsearch.indexer` loads only the errors; `build_index` and the
report classes load the pipeline when first used."""

from importlib import import_module

from .errors import (
    ConfigError,
    ImageLoadError,
    StoreError,
    StoreInUseError,
    StoreMismatchError,
    StoreMissingError,
    VitsearchError,
    WeightsUnavailableError,
)

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
    "StoreMissingError",
    "ImageLoadError",
]

_LAZY = {"build_index": ".build", "IndexReport": ".report", "FileFailure": ".report"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
