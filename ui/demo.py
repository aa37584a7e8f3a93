"""`vitsearch demo`: index generated samples under data/ and show one search, even offline."""

from __future__ import annotations

import sys
from pathlib import Path

from indexer.errors import WeightsUnavailableError

__all__ = ["run_demo"]

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"


def run_demo(store: str | None = None) -> int:
    from indexer import build_index
    from search import ImageIndex

    from .samples import write_samples

    if not SAMPLE_DIR.is_dir():
        write_samples(SAMPLE_DIR)
        print(f"wrote sample images to {SAMPLE_DIR}", file=sys.stderr)
    store = store or str(SAMPLE_DIR.parent / "demo-store")
    try:
        report = build_index([SAMPLE_DIR], store)
    except WeightsUnavailableError as e:
        print(
            f"{e}\n\nThis DEMO now falls back to RANDOM weights: it shows the tool working, but its "
            "similarity scores mean nothing. `vitsearch index` never falls back.",
            file=sys.stderr,
        )
        report = build_index([SAMPLE_DIR], store, weights="random")
    print(f"indexed {SAMPLE_DIR}: {report.summary()}")
    index = ImageIndex.open(store)
    query = SAMPLE_DIR / "variants" / "scene-00-small.jpg"
    print(f"\nimages most like {query.relative_to(SAMPLE_DIR.parent.parent)}:")
    for hit in index.search(str(query), k=5):
        print(f"{hit.score:.4f}\t{hit.path}")
    if index.manifest["weights_source"].startswith("random"):
        print("\n(random weights: scores are meaningless; pass real weights with --weights FILE)", file=sys.stderr)
    return 0
