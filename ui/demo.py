"""`vitsearch demo`: index generated samples and show one search, even offline.

The samples and the demo store go to data/ of a source checkout, else the user's data folder.
"""

from __future__ import annotations

import sys

from ..indexer.errors import WeightsUnavailableError
from ..indexer.locations import data_dir

__all__ = ["run_demo"]


def run_demo(store_dir: str | None = None) -> int:
    from ..indexer import build_index
    from ..search import ImageIndex
    from .samples import write_samples

    sample_dir = data_dir() / "sample"
    if not sample_dir.is_dir():
        write_samples(sample_dir)
        print(f"wrote sample images to {sample_dir}", file=sys.stderr)
    store = store_dir or str(data_dir() / "demo-store")
    try:
        report = build_index([sample_dir], store)
    except WeightsUnavailableError as e:
        print(
            f"{e}\n\nThis DEMO now falls back to RANDOM weights: it shows the tool working, but its "
            "similarity scores mean nothing. `vitsearch index` never falls back.",
            file=sys.stderr,
        )
        report = build_index([sample_dir], store, weights="random")
    print(f"indexed {sample_dir}: {report.summary()}")
    index = ImageIndex.open(store)
    query = sample_dir / "variants" / "scene-00-small.jpg"
    print(f"\nimages most like {query}:")
    for hit in index.search(str(query), k=5):
        print(f"{hit.score:.4f}\t{hit.path}")
    if index.manifest["weights_source"].startswith("random"):
        print("\n(random weights: scores are meaningless; pass real weights with --weights FILE)", file=sys.stderr)
    return 0
