"""Rows per second the store commits: the ceiling that DuckDB writes put on a fast (GPU) run.

    python tests/bench/commit_rate.py [--rows 4096] [--repeats 5]

Each repeat writes `rows` new images with 512-d embeddings in one transaction, as the indexer's
commit does; prints one JSON line with rows/s (median of the repeats).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np

from vitsearch.indexer.imaging.images import ImageInfo
from vitsearch.indexer.store.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    store = Store(Path(tempfile.mkdtemp(prefix="vitsearch-commit-")) / "store", read_only=False)
    store.dir.mkdir(parents=True)
    store.initialize({"model_name": "bench", "model_tag": "", "preprocess": {}, "dim": 512,
                      "metric": "cosine", "weights_source": "random", "weights_fingerprint": "x"})
    rng = np.random.default_rng(0)
    info = ImageInfo(4000, 3000, "JPEG")
    rates = []
    for repeat in range(args.repeats):
        vectors = rng.standard_normal((args.rows, 512)).astype(np.float32)
        started = time.perf_counter()
        with store.transaction() as tx:
            for i, vector in enumerate(vectors):
                tx.write_image(None, f"/photos/{repeat}/{i:06d}.jpg", "/photos", 3_000_000, i, f"{repeat}-{i}",
                               info, vector)
        rates.append(args.rows / (time.perf_counter() - started))
    print(json.dumps({"figure": "store_commit_rows_per_s", "rows_per_transaction": args.rows,
                      "median": round(statistics.median(rates)), "min": round(min(rates))}))


if __name__ == "__main__":
    main()
