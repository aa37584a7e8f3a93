"""vitsearch's reading side: open a store read-only and answer queries."""

from .export import export_parquet
from .filters import FILTER_COLUMNS
from .index import Hit, ImageIndex, to_dataframe, to_records
from .info import list_failures, store_info

__all__ = [
    "ImageIndex", "Hit", "to_records", "to_dataframe", "FILTER_COLUMNS",
    "store_info", "list_failures", "export_parquet",
]
