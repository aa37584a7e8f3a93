"""Where vitsearch keeps its data by default: a source checkout's data/, else the user's data folder;
its cache (prepared models, compiled graphs, map layouts), which is always safe to delete; and
whether a path lies within a folder.

An installed vitsearch never writes inside its own install (site-packages may be read-only, is
replaced on upgrade, and is no place for a photo index).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["default_store_dir", "data_dir", "checkout_data_dir", "user_data_dir", "cache_root", "CACHE_ENV",
           "is_within"]

CACHE_ENV = "VITSEARCH_CACHE"

_CHECKOUT = Path(__file__).resolve().parent.parent  # the repository root, when run from source


def checkout_data_dir() -> Path | None:
    """`data/` of the source checkout this code runs from, or None for an installed copy."""
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "data").is_dir() \
            and (_CHECKOUT / "indexer" / "locations.py").is_file():
        return _CHECKOUT / "data"
    return None


def user_data_dir() -> Path:
    """The platform's per-user data folder for vitsearch."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~/AppData/Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "vitsearch"


def data_dir() -> Path:
    return checkout_data_dir() or user_data_dir()


def default_store_dir() -> Path:
    """VITSEARCH_STORE, else data/store of a source checkout, else the user's data folder."""
    env = os.environ.get("VITSEARCH_STORE")
    if env:
        return Path(env).expanduser()
    return data_dir() / "store"


def cache_root() -> Path:
    """$VITSEARCH_CACHE, else $XDG_CACHE_HOME/vitsearch, else ~/.cache/vitsearch."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vitsearch"


def is_within(path: str, root: str) -> bool:
    """`path` is `root` or lies under it (both absolute and normalised; no file system access)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
