"""The Ray engine against the local one, and the shard merge at scale. JSON lines:

    python -m tests.bench.ray_bench engines FOLDER      # same photos, both engines, whole commands
    python -m tests.bench.ray_bench merge --n 1000000 [--in-memory] [--memory-budget 64M]
                                                        # Parquet shards -> DuckDB -> FAISS

`engines` runs `vitsearch index` (random weights) into fresh stores, local then ray, and reports
each command's wall time, images/s and the ratio (the engine's overhead on one machine: Ray pays
on clusters). `merge` writes N synthetic rows as shards the way a cluster job does, then times
merging them into a store, then building FAISS from the store in a process of its own, each
step with its peak RSS (`--in-memory`: also the build with every embedding loaded at once;
`--memory-budget`: the store's budget, so that a small one puts the IVF lists on disk).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def engines(folder: Path, work: Path, extra: list[str], rounds: int) -> None:
    """Alternate the engines `rounds` times (this machine is shared and noisy); ratio of medians."""
    rates: dict[str, list[float]] = {"local": [], "ray": []}
    for n, engine in enumerate(["local", "ray"] * rounds):
        store = work / f"store-{engine}-{n}"
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "vitsearch.ui.cli", "index", str(folder), "--store", str(store),
                                 "--weights", "random", "--engine", engine, "--json", *extra],
                                cwd=REPO, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode:
            emit(figure="engine", engine=engine, error=result.stderr[-1500:])
            return
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        files = summary["added"] + summary["failed"]
        rates[engine].append(files / seconds)
        emit(figure="engine_end_to_end", engine=engine, files=files, command_seconds=round(seconds, 1),
             files_per_s=round(rates[engine][-1], 3), in_run_images_per_s=summary["images_per_s"])
    median = {engine: sorted(values)[len(values) // 2] for engine, values in rates.items()}
    emit(figure="ray_over_local_rate", value=round(median["ray"] / median["local"], 3), rounds=rounds, bar=0.6,
         pairs=[round(r / loc, 3) for loc, r in zip(rates["local"], rates["ray"], strict=True)])


MERGE = r'''
import sys, time, json
import numpy as np
sys.path.insert(0, sys.argv[3])
from tests.bench.memory import peak_rss_mb
from tests.bench.synthetic import clustered_unit_vectors
from vitsearch.indexer.model.encoder import encoder_identity, load_encoder
from vitsearch.indexer.ray.engine import _row, _write_and_merge
from vitsearch.indexer.report import IndexReport
from vitsearch.indexer.store.store import Store
n, shard = int(sys.argv[1]), int(sys.argv[4])
store = Store(sys.argv[2], read_only=False)
store.initialize(encoder_identity(load_encoder("random", device="cpu")))
with store.transaction() as tx:
    ids = tx.reserve_ids(n)
report = IndexReport()
started = time.perf_counter()
shard_dir = store.dir / "ray-shards"
shard_dir.mkdir(parents=True, exist_ok=True)
for start in range(0, n, shard):
    block = clustered_unit_vectors(min(shard, n - start), seed=start)
    facts = json.dumps({"width": 4000, "height": 3000, "format": "JPEG"})
    batch = {"facts": [facts] * len(block), "reason": [""] * len(block), "detail": [""] * len(block),
             "content_hash": [f"{i:032x}" for i in range(start, start + len(block))], "embedding": block}
    rows = [_row({"id": ids[start + k], "path": f"/data/{(start + k) % 1000:03d}/img-{start + k:09d}.jpg",
                  "root": "/data", "size": 100000 + k, "mtime_ns": 1, "existed": False}, batch, k)
            for k in range(len(block))]
    _write_and_merge(rows, start // shard, store, shard_dir, 512, report)
merged = time.perf_counter() - started
print("FIGURES " + json.dumps({"step": "duckdb", "rows": n, "merge_seconds": round(merged, 1),
                               "rows_per_s": round(n / merged), "peak_rss_mb": round(peak_rss_mb(), 1)}), flush=True)
'''

# The FAISS step in a process of its own, so that its peak RSS is its own: as `vitsearch index`
# does it (streamed from DuckDB), or with every embedding loaded first (the way before streaming).
FAISS = r'''
import sys, time, json
sys.path.insert(0, sys.argv[2])
from tests.bench.memory import PeakAnon, peak_rss_mb
from vitsearch.indexer.store.ann import build_ann, choose_index_type
from vitsearch.indexer.store.store import Store
from vitsearch.indexer.store.vectors import open_for_writing, sync_and_save
store = Store(sys.argv[1], read_only=False)
if int(sys.argv[4]):
    store.set_manifest(memory_budget=int(sys.argv[4]))
started = time.perf_counter()
with PeakAnon() as anon:
    if sys.argv[3] == "streamed":
        vectors = sync_and_save(store, None)
        choice = vectors.choice
    else:
        ids, embeddings = store.embeddings()
        _, choice = build_ann(ids, embeddings.reshape(len(ids), 512), choose_index_type(len(ids), 512))
print("FIGURES " + json.dumps({"step": "faiss_" + sys.argv[3], "index_type": choice.index_type, "nlist": choice.nlist,
                               "nprobe": choice.params.get("nprobe"), "recall_at_10": choice.recall,
                               "lists_on_disk": choice.on_disk,
                               "seconds": round(time.perf_counter() - started, 1),
                               "peak_rss_mb": round(peak_rss_mb(), 1), "peak_anon_mb": round(anon.peak_mb, 1)}),
      flush=True)
'''


def merge(n: int, work: Path, shard: int, in_memory: bool, budget: int) -> None:
    store = work / f"merge-{n}"
    steps = [[FAISS, str(store), str(REPO), "streamed", str(budget)]]
    if not (store / "metadata.duckdb").exists():  # a store left by an earlier run: time FAISS again
        steps.insert(0, [MERGE, str(n), str(store), str(REPO), str(shard)])
    if in_memory:
        steps.append([FAISS, str(store), str(REPO), "in_memory", "0"])
    for code, *argv in steps:
        result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO)
        for line in result.stdout.splitlines():
            if line.startswith("FIGURES "):
                emit(figure="shard_merge", n=n, shard_rows=shard, **json.loads(line[len("FIGURES "):]))
        if result.returncode:
            emit(figure="merge", n=n, returncode=result.returncode, error=result.stderr[-1500:])
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("engines")
    compare.add_argument("folder")
    compare.add_argument("--workdir")
    compare.add_argument("--rounds", type=int, default=3)
    compare.add_argument("extra", nargs="*", help="more `vitsearch index` flags for both runs")
    merging = commands.add_parser("merge")
    merging.add_argument("--n", type=int, default=1_000_000)
    merging.add_argument("--shard", type=int, default=8192)
    merging.add_argument("--in-memory", action="store_true",
                         help="also build FAISS with every embedding loaded first, for comparison")
    merging.add_argument("--memory-budget", type=int, default=0,
                         help="bytes the index may hold in memory (default: the store's, 1 GiB)")
    merging.add_argument("--workdir")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vitsearch-ray-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.command == "engines":
        engines(Path(args.folder), work, args.extra, args.rounds)
    else:
        merge(args.n, work, args.shard, args.in_memory, args.memory_budget)


if __name__ == "__main__":
    main()
