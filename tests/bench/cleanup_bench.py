"""Whole-library cleanup at scale: `dupes --resolve ... --json` over N stored vectors with 1%
planted duplicates, a third of them rotated or mirrored (embedding far from the original,
orientation hash transformed). Prints seconds, peak RSS, and how many planted pairs the plan
resolved, as JSON lines.

    python -m tests.bench.cleanup_bench --n 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.bench.search_bench import build_store, emit
from tests.bench.synthetic import clustered_unit_vectors, plant_near_duplicates
from vitsearch.indexer.imaging.signatures import TRANSFORMS, transformed_hashes
from vitsearch.indexer.model.encoder import encoder_identity, load_encoder
from vitsearch.indexer.reindex import reindex
from vitsearch.indexer.store.store import Store

REPO = Path(__file__).resolve().parents[2]


def add_signatures(store_dir: Path, n: int, planted: np.ndarray, seed: int = 2) -> int:
    """Random orientation hashes; each planted copy gets its original's hash, a third of them
    under a rotation or mirror (and an unrelated embedding: the model cannot see the match)."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(-(2**62), 2**62, n, dtype=np.int64)
    copies, originals = planted[:, 0], planted[:, 1]
    hashes[copies] = hashes[originals]
    turned = copies[::3]
    names = list(TRANSFORMS)
    for k, name in enumerate(names):
        rows = turned[k::len(names)]
        hashes[rows] = transformed_hashes(hashes[originals[np.isin(copies, rows)]], name)
    hashes[copies] ^= np.int64(1) << rng.integers(1, 63, len(copies)).astype(np.int64)  # one bit of re-encoding
    ids = np.arange(1, n + 1, dtype=np.int64)
    store = Store(store_dir, read_only=False)
    with store.transaction() as tx:
        tx.set_signatures(ids, [f"{i:032x}" for i in ids], hashes)
    return len(turned)


def child(store_dir: str) -> None:
    from tests.bench.memory import peak_rss_mb
    from vitsearch.search import ImageIndex
    from vitsearch.search.dupes import find_duplicates
    from vitsearch.search.resolve import RESOLVE_TIERS, parse_rules, plan_resolution

    started = time.perf_counter()
    index = ImageIndex.open(store_dir)
    groups = find_duplicates(index, tiers=RESOLVE_TIERS)
    found = time.perf_counter() - started
    plans = plan_resolution(index.store, groups, parse_rules("largest-resolution,largest-file,shortest-path"),
                            check_files=False)
    lines = [json.dumps(p.to_record()) for p in plans]
    pairs = [sorted([p.keeper["id"], *(m["id"] for m in p.move)]) for p in plans]
    print(json.dumps({"seconds": round(time.perf_counter() - started, 1), "find_seconds": round(found, 1),
                      "groups": len(groups), "plans": len(plans), "json_bytes": sum(map(len, lines)),
                      "moves": sum(len(p.move) for p in plans), "peak_rss_mb": round(peak_rss_mb(), 1),
                      "members": pairs}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--workdir")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vitsearch-cleanup-bench-"))
    vectors = clustered_unit_vectors(args.n, seed=args.n)
    planted = plant_near_duplicates(vectors)
    turned_rows = planted[::3, 0]
    vectors[turned_rows] = clustered_unit_vectors(len(turned_rows), seed=7)  # the model cannot see these
    store_dir = work / f"store-{args.n}"
    started = time.perf_counter()
    turned = len(planted[::3])
    if not (store_dir / "metadata.duckdb").exists():  # a --workdir from an earlier run is reused
        build_store(store_dir, vectors, encoder_identity(load_encoder("random", device="cpu")))
        add_signatures(store_dir, args.n, planted)
        reindex(store_dir, index_type="auto")
    del vectors
    emit(figure="cleanup_store_setup_s", n=args.n, value=round(time.perf_counter() - started, 1))
    result = subprocess.run([sys.executable, "-m", "tests.bench.cleanup_bench", "--child", str(store_dir)],
                            capture_output=True, text=True, cwd=REPO)
    if result.returncode:
        emit(figure="cleanup_resolve", n=args.n, error=result.stderr[-1000:])
        return
    figures = json.loads(result.stdout.splitlines()[-1])
    together = {tuple(sorted(m)) for m in figures.pop("members")}
    grouped = {i: k for k, members in enumerate(together) for i in members}
    ids = planted + 1  # rows -> ids
    resolved = [grouped.get(int(c), -1) == grouped.get(int(o), -2) for c, o in ids]
    turned_ids = {int(i) for i in ids[::3, 0]}
    turned_resolved = [r for (c, _), r in zip(ids, resolved, strict=True) if int(c) in turned_ids]
    emit(figure="cleanup_resolve_json", n=args.n, planted_pairs=len(ids), rotated_or_mirrored=turned,
         planted_pairs_in_one_plan=round(float(np.mean(resolved)), 4),
         rotated_or_mirrored_in_one_plan=round(float(np.mean(turned_resolved)), 4),
         limit_seconds=600, limit_rss_mb=4096, **figures)


if __name__ == "__main__":
    main()
