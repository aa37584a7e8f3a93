"""vitsearch's reading side: open a store read-only and answer queries.

Imports are lazy: `import vitsearch.search` loads nothing of the model, the decoders or the
writer's pipeline; each name loads its module when first used."""

from importlib import import_module

__all__ = [
    "ImageIndex", "Hit", "to_records", "to_dataframe", "FILTER_COLUMNS",
    "store_info", "list_failures", "export_parquet",
]

_LAZY = {"ImageIndex": ".index", "Hit": ".index", "to_records": ".index", "to_dataframe": ".index",
         "FILTER_COLUMNS": ".filters", "store_info": ".info", "list_failures": ".info",
         "export_parquet": ".export"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
