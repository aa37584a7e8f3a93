"""The values the flags offer whose owners cannot be imported to build the parser.

The precision, compile, device and decode choices come straight from indexer/model. The owners of
these load numpy or PIL on import (store/ann.py, search/collection_map.py, search/tiers.py) and
`--help` must stay instant, so they are written out here and tests/ui/test_cli.py checks that each
equals its owner's constant; the engines are the two build functions.
"""

from __future__ import annotations

__all__ = ["DEVICES", "DECODE_MODES", "ENGINES", "MAP_METHODS", "INDEX_TYPES", "TIERS"]

from ...indexer.model.choices import DECODE_MODES, DEVICES

ENGINES = ("local", "ray")  # build_index, or indexer.ray.engine.build_index_ray
MAP_METHODS = ("auto", "umap", "pca")  # search.collection_map.METHODS
INDEX_TYPES = ("auto", "flat", "ivf-flat", "ivf-sq8", "ivf-pq")  # "auto" + indexer.store.ann.INDEX_TYPES
TIERS = ("identical", "same-pixels", "near", "similar", "burst", "hardlink")  # search.tiers.TIERS
