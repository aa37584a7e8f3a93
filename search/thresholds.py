"""The similarity thresholds of a store's duplicate tiers: the caller's values, else the store's
calibrated ones (`vitsearch dupes --calibrate`), else the defaults."""

from __future__ import annotations

from ..indexer.store.store import Store

__all__ = ["thresholds", "NEAR_DEFAULT", "SIMILAR_DEFAULT"]

NEAR_DEFAULT = 0.95
SIMILAR_DEFAULT = 0.85


def thresholds(store: Store, near: float | None = None, similar: float | None = None) -> tuple[float, float]:
    """(near, similar): the arguments > the store's calibrated thresholds > the defaults."""
    manifest = store.manifest()
    near = near if near is not None else float(manifest.get("near_threshold", NEAR_DEFAULT))
    similar = similar if similar is not None else float(manifest.get("similar_threshold", SIMILAR_DEFAULT))
    return near, min(similar, near)
