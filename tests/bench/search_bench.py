"""Search benchmarks on synthetic stores of 100k and 1M vectors; one JSON line per figure.

    python tests/bench/search_bench.py [--sizes 100000 1000000] [--workdir DIR] [--queries 1000]

The vectors are synthetic 512-d unit vectors from a mixture of clusters (tests/bench/synthetic.py),
written into a real store (DuckDB rows with metadata and embeddings, manifest of the real model
with random weights), then indexed by `reindex` with the automatic choice and a 1 GB budget.
Figures: build time, index memory, single-query vector-search latency p50/p99 and recall@10
against exact; filtered search latency at 1% and 50% selectivity through ImageIndex; `dupes`
wall time and peak RSS (in a child process); image file -> hits latency with the real model.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np

from tests.bench.synthetic import clustered_unit_vectors, plant_near_duplicates
from vitsearch.indexer.model.encoder import (
    encoder_identity,
    load_encoder,
)
from vitsearch.indexer.reindex import reindex
from vitsearch.indexer.store.ann import exact_neighbours, measure_recall
from vitsearch.indexer.store.store import Store


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def build_store(store_dir: Path, vectors: np.ndarray, identity: dict, paths: list[str] | None = None,
                root: str = "/synthetic") -> None:
    """A real store whose rows carry synthetic metadata: width = id % 100 drives selectivity.
    `paths` (default: names of files that do not exist) lets rows point at real files."""
    import pandas as pd

    store = Store(store_dir, read_only=False)
    store.initialize(identity)
    n = len(vectors)
    for start in range(0, n, 50_000):
        ids = np.arange(start + 1, min(n, start + 50_000) + 1)
        frame = pd.DataFrame({  # noqa: F841 - DuckDB reads it by name (replacement scan)
            "id": ids,
            "path": [paths[i - 1] if paths else f"/synthetic/{i % 1000:03d}/img-{i:07d}.jpg" for i in ids],
            "root": root,
            "size": 100_000 + ids,
            "mtime_ns": 1_700_000_000_000_000_000 + ids,
            "content_hash": [f"{i:032x}" for i in ids],
            "width": ids % 100,
            "height": 100,
            "format": "JPEG",
            "embedding": list(vectors[start:start + len(ids)]),
        })
        with store.connect() as con:
            con.execute(
                "INSERT INTO images (id, path, root, size, mtime_ns, content_hash, width, height, format, "
                "indexed_at, status, embedding) SELECT id, path, root, size, mtime_ns, content_hash, width, "
                "height, format, current_localtimestamp(), 'ok', embedding::FLOAT[512] FROM frame"
            )
    store.set_manifest(next_id=n + 1, generation=1, log_floor=1)


def latency_ms(fn, items) -> np.ndarray:
    times = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - started) * 1000)
    return np.asarray(times)


def bench_size(n: int, work: Path, encoder, queries: int) -> None:
    from vitsearch.search import ImageIndex

    vectors = clustered_unit_vectors(n, seed=n)
    planted = plant_near_duplicates(vectors)  # 1% of images get a near-duplicate (cosine ~0.99)
    store_dir = work / f"store-{n}"
    started = time.perf_counter()
    if not (store_dir / "metadata.duckdb").exists():
        build_store(store_dir, vectors, encoder_identity(encoder))
    emit(figure="store_write_s", n=n, value=round(time.perf_counter() - started, 1))

    rss_before = _rss_mb()
    started = time.perf_counter()
    built = reindex(store_dir, index_type="auto")
    emit(figure="index_build_s", n=n, index_type=built.index_type, params=built.choice.params,
         value=round(time.perf_counter() - started, 1), train_add_tune_s=built.choice.build_seconds,
         tuned_recall_at_10=built.choice.recall)
    import faiss

    emit(figure="index_memory_mb", n=n, value=round(len(faiss.serialize_index(built.index)) / 2**20, 1),
         process_rss_growth_mb=round(_rss_mb() - rss_before, 1))
    del built

    index = ImageIndex.open(store_dir, encoder=encoder)
    rng = np.random.default_rng(99)
    positions = rng.choice(n, size=queries, replace=False)
    sample = vectors[positions]
    faiss_index = index.vectors.index
    faiss_index.search(sample[:10], 10)  # warm
    times = latency_ms(lambda v: faiss_index.search(v[None, :], 10), sample)
    emit(figure="vector_search_latency_ms", n=n, index_type=index.vectors.index_type,
         p50=round(float(np.percentile(times, 50)), 3), p99=round(float(np.percentile(times, 99)), 3))
    ids = np.arange(1, n + 1, dtype=np.int64)
    truth = exact_neighbours(ids, vectors, sample[:500], 11)
    _, found = faiss_index.search(sample[:500], 11)
    emit(figure="recall_at_10_vs_exact", n=n, held_out_queries=500,
         value=round(measure_recall(found, truth, 10), 4))
    api = latency_ms(lambda v: index.search(v, k=10), sample[:200])
    emit(figure="api_search_latency_ms", n=n, note="vector query via ImageIndex: FAISS + exact rescoring + metadata",
         p50=round(float(np.percentile(api, 50)), 2), p99=round(float(np.percentile(api, 99)), 2))
    for label, where in (("1%", "width < 1"), ("50%", "width < 50")):
        times = latency_ms(lambda v, where=where: index.search(v, k=10, where=where), sample[:50])
        emit(figure="filtered_search_latency_ms", n=n, selectivity=label, where=where,
             p50=round(float(np.percentile(times, 50)), 1), p99=round(float(np.percentile(times, 99)), 1))
    del vectors
    dupes_child(store_dir, n, len(planted))
    end_to_end(index, n)


def dupes_child(store_dir: Path, n: int, planted: int) -> None:
    code = (
        "import sys, time, json; sys.path.insert(0, sys.argv[2])\n"
        "from tests.bench.memory import peak_rss_mb\n"
        "from vitsearch.search import ImageIndex\nfrom vitsearch.search.dupes import find_duplicates\n"
        "started = time.perf_counter()\nindex = ImageIndex.open(sys.argv[1])\n"
        "groups = find_duplicates(index, tiers=('near',))\n"
        "print(json.dumps({'seconds': round(time.perf_counter() - started, 1), 'near_groups': len(groups),"
        " 'peak_rss_mb': round(peak_rss_mb(), 1)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(store_dir), str(REPO)],
                            capture_output=True, text=True)
    if result.returncode:
        emit(figure="dupes", n=n, error=result.stderr[-500:])
        return
    emit(figure="dupes", n=n, planted_pairs=planted, **json.loads(result.stdout.splitlines()[-1]))


def end_to_end(index, n: int) -> None:
    """Image file -> 512-d vector (real architecture, warm) -> hits."""
    from vitsearch.ui.samples import make_scene

    path = Path(tempfile.mkdtemp()) / "query.jpg"
    make_scene(3, (3000, 2000)).save(path, quality=90)
    index.search(str(path), k=10)  # warm the model
    times = latency_ms(lambda _: index.search(str(path), k=10), range(10))
    emit(figure="end_to_end_file_to_hits_ms", n=n, image="3000x2000 JPEG",
         p50=round(float(np.percentile(times, 50)), 1))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--workdir")
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vitsearch-search-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder("random", device="cpu")
    for n in args.sizes:
        bench_size(n, work, encoder, args.queries)


if __name__ == "__main__":
    main()
