"""vitsearch's reading side: open a store read-only and answer queries."""

from .export import export_parquet
from .index import Hit, ImageIndex
from .info import list_failures, store_info

__all__ = ["ImageIndex", "Hit", "store_info", "list_failures", "export_parquet"]
