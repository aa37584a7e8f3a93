"""Benchmark: re-indexing N unchanged files (default 10k) must take seconds, not minutes.

    python tests/bench/noop_reindex.py [--files 10000] [--per-folder 1000] [--dim 512] [--workdir DIR]

(`--files 100000 --per-folder 10` is the 100k files in 10k folders of a photo library.)

Builds a store with a cheap fake encoder (the model plays no part in a no-op) whose vectors have
the model's 512 dimensions (so the index file is the real size: 200 MB at 100k), then times the
no-op re-index through build_index (wall and CPU seconds, three times), where its time goes (the
walk, reading the stored rows, comparing, the rest), and, separately, loading the real model
(random weights), which `vitsearch index` does only when a run has something to embed. A
--workdir whose images/ exist is reused, its store too. Prints one JSON line per figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
from PIL import Image

from tests.conftest import FakeEncoder
from vitsearch.indexer import build_index
from vitsearch.indexer.scan import scan_folders


def write_tiny_images(folder: Path, count: int, per_folder: int = 1000) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / f"{i // per_folder:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"img-{i:06d}.png")


class WideFakeEncoder(FakeEncoder):
    """The fake encoder's colour layout, projected to `dim` dimensions (a fixed random matrix)."""

    def __init__(self, dim: int):
        super().__init__(salt=f"wide-{dim}")
        self.dim = dim
        self.projection = np.random.default_rng(dim).standard_normal((FakeEncoder.dim, dim)).astype(np.float32)

    def encode(self, batch) -> np.ndarray:
        values = super().encode(batch) @ self.projection
        return values / np.linalg.norm(values, axis=1, keepdims=True)


def phases(folder: Path, store: Path, encoder: FakeEncoder) -> dict:
    """Where a no-op's time goes: the walk, reading the stored rows, comparing them, the rest."""
    from vitsearch.indexer.plan import StoredRows, plan_sync
    from vitsearch.indexer.store.store import Store

    started = time.perf_counter()
    scanned = list(scan_folders([str(folder)]))
    walked = time.perf_counter()
    rows = StoredRows.read(Store(store))
    read = time.perf_counter()
    plan_sync(scanned, rows, [str(folder)])
    planned = time.perf_counter()
    build_index([folder], store, encoder=encoder)
    whole = time.perf_counter() - planned
    return {"scan": round(walked - started, 3), "rows": round(read - walked, 3), "plan": round(planned - read, 3),
            "rest": round(whole - (planned - started), 3), "whole": round(whole, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--per-folder", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512, help="of the stored vectors (the model's: 512)")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    make_encoder = (lambda: WideFakeEncoder(args.dim)) if args.dim != FakeEncoder.dim else FakeEncoder
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vitsearch-noop-"))
    folder, store = work / "images", work / "store"
    if not folder.exists():
        write_tiny_images(folder, args.files, args.per_folder)
    folders = sum(1 for p in folder.iterdir() if p.is_dir())
    started = time.perf_counter()
    scanned = sum(1 for _ in scan_folders([str(folder)]))
    print(json.dumps({"figure": "scan_s", "files": scanned, "folders": folders,
                      "value": round(time.perf_counter() - started, 2)}))
    if not store.exists():
        started = time.perf_counter()
        first = build_index([folder], store, encoder=make_encoder(), batch_size=256)
        print(json.dumps({"figure": "first_index_fake_encoder_s", "files": args.files,
                          "value": round(time.perf_counter() - started, 2), "added": first.added}))
    for attempt in range(3):
        encoder = make_encoder()
        started, cpu = time.perf_counter(), time.process_time()
        report = build_index([folder], store, encoder=encoder)
        seconds = time.perf_counter() - started
        assert encoder.calls == 0 and report.unchanged == args.files
        print(json.dumps({"figure": "noop_reindex_s", "files": args.files, "attempt": attempt,
                          "value": round(seconds, 2), "cpu_s": round(time.process_time() - cpu, 2)}))
    print(json.dumps({"figure": "noop_phases_s", "files": args.files, **phases(folder, store, make_encoder())}))
    from vitsearch.indexer.model.encoder import load_encoder

    started = time.perf_counter()
    load_encoder("random", device="cpu")
    print(json.dumps({"figure": "model_load_random_weights_s", "value": round(time.perf_counter() - started, 2)}))


if __name__ == "__main__":
    main()
