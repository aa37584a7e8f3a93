"""Single changes beside an index whose lists are on disk, at a large collection; one JSON line per figure.

    python tests/bench/delta_bench.py [--n 200000] [--changes 100] [--queries 200] [--workdir DIR]

A store of n synthetic 512-d vectors (tests/bench/synthetic.py, DuckDB rows as search_bench.py
writes them), indexed with the automatic choice under a 16 MB budget: IVF-SQ8 with its lists in
a data file (indexer/store/ondisk.py). Then `changes` single-vector changes in a row (a third
each added, changed, removed), each committed by its own store transaction and synced as `index
--watch` syncs (DeferredSaves: the index in memory, its file saved when due, once a minute, and
at the end; its DuckDB connection closed after each, as the watcher's lease expires between
changes seconds apart); then as many again with a save after each (as one `vitsearch index` run per change
would). Figures: the build; bytes written (/proc/self/io write_bytes, the whole process: DuckDB's
commits and the index's sync apart); the data file's name and mtime before and after; recall@10
against brute force during the changes (the index's own answers, and its candidates re-scored
exactly as search does) and a fresh build's on the same queries; the fold of the delta into a new
data file: its time and bytes, the folded index against lists written fresh with the same
training (same answers), and its recall against the fresh build's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np

from tests.bench.search_bench import build_store
from tests.bench.synthetic import clustered_unit_vectors
from vitsearch.indexer.reindex import reindex
from vitsearch.indexer.store import vectors as vector_file
from vitsearch.indexer.store.ann import STREAM_CHUNK, measure_recall, search_parameters
from vitsearch.indexer.store.connections import close_lease
from vitsearch.indexer.store.lock import WriterLock
from vitsearch.indexer.store.ondisk import BASE_SUFFIX, DATA_SUFFIX, base_path, data_file, write_lists
from vitsearch.indexer.store.store import Store
from vitsearch.indexer.store.vectors import (
    FAISS_NAME,
    DeferredSaves,
    fold_delta,
    rebuild,
    sync_and_save,
)

DIM = 512
BUDGET_PER_VECTOR = 32  # bytes: below what even IVF-PQ needs (72): auto takes IVF-SQ8 with its lists on disk
IDENTITY = {"model_name": "synthetic", "model_tag": "", "preprocess": {"synthetic": True}, "dim": DIM,
            "metric": "cosine", "weights_source": "synthetic", "weights_fingerprint": "synthetic"}
K = 10
FETCH = 50  # what search/index.py fetches for k=10 from an IVF before re-scoring exactly


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def write_bytes() -> int:
    """Bytes this process (all its threads: DuckDB's too) has caused to be written to storage."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


class IndexWrites:
    """Bytes the vector index writes (its index file at each save, a fold's new data and base files),
    counted at the source, so that DuckDB's writes in the same process can be told apart."""

    def __init__(self, store_dir: Path):
        self.bytes = 0
        self._save, self._fold = vector_file.save_vector_index, vector_file.fold_delta
        self._bases = {(p.name, p.stat().st_mtime_ns) for p in store_dir.glob(f"*{BASE_SUFFIX}")}  # already there

    def __enter__(self):
        def save(store, vectors):
            self._save(store, vectors)
            self.bytes += (store.dir / FAISS_NAME).stat().st_size
            for base in store.dir.glob(f"*{BASE_SUFFIX}"):  # written with a new data file, else left as it is
                made = (base.name, base.stat().st_mtime_ns)
                if made not in self._bases:
                    self._bases.add(made)
                    self.bytes += base.stat().st_size

        def fold(store, vectors):
            self._fold(store, vectors)
            self.bytes += data_file(vectors.index.base).stat().st_size

        vector_file.save_vector_index, vector_file.fold_delta = save, fold
        return self

    def __exit__(self, *_):
        vector_file.save_vector_index, vector_file.fold_delta = self._save, self._fold


class Collection:
    """What DuckDB holds, kept beside it in memory: the brute-force oracle. Id i is row i - 1."""

    def __init__(self, vectors: np.ndarray, stored: int, room: int):
        """`vectors`: the stored ones first, then those changes bring."""
        self.vectors = np.zeros((stored + room, vectors.shape[1]), np.float32)
        self.vectors[:stored] = vectors[:stored]
        self.spare = vectors[stored:].copy()  # not a view: the caller's array can go
        self.alive = np.zeros(len(self.vectors), bool)
        self.alive[:stored] = True
        self.size = stored
        self.touched: set[int] = set()  # ids added or changed: their vectors are in the delta

    def ids(self) -> np.ndarray:
        return np.flatnonzero(self.alive) + 1

    def set(self, row_id: int, vector: np.ndarray | None) -> None:
        self.size = max(self.size, row_id)
        self.vectors[row_id - 1] = 0.0 if vector is None else vector
        self.alive[row_id - 1] = vector is not None
        (self.touched.add if vector is not None else self.touched.discard)(row_id)

    def exact(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Ids of the exact top-k of the live vectors (removed ones are zero: dropped after)."""
        import faiss

        _, rows = faiss.knn(queries, self.vectors[:self.size], k + 16, metric=faiss.METRIC_INNER_PRODUCT)
        out = np.full((len(queries), k), -1, np.int64)
        for i, row in enumerate(rows):
            live = row[(row >= 0) & self.alive[np.maximum(row, 0)]][:k]
            out[i, :len(live)] = live + 1
        return out


def recall(vectors, collection: Collection, query_ids: np.ndarray) -> dict:
    """recall@10 (the query's own id left out) of the index's answers and of its candidates
    re-scored exactly, as search does."""
    queries = collection.vectors[query_ids - 1]
    truth = collection.exact(queries, K + 1)
    params = search_parameters(vectors.index, vectors.choice)
    _, found = vectors.index.search(queries, FETCH, params=params)
    rescored = np.full_like(found[:, :K + 1], -1)
    for i, row in enumerate(found):
        row = row[row >= 0]
        scores = collection.vectors[row - 1] @ queries[i]
        best = row[np.lexsort((row, -scores))][:K + 1]
        rescored[i, :len(best)] = best
    return {"raw": round(measure_recall(found[:, :K + 1], truth, K), 4),
            "rescored": round(measure_recall(rescored, truth, K), 4)}


def pick_queries(collection: Collection, count: int, rng) -> np.ndarray:
    """The vectors changed or added so far (they live in the delta), then random live ones."""
    touched = np.asarray(sorted(collection.touched), np.int64)
    ids = collection.ids()
    others = rng.choice(ids[~np.isin(ids, touched)], size=max(count - len(touched), 0), replace=False)
    return np.concatenate([touched, others])[:count]


def make_change(tx, step: int, collection: Collection, rng, next_id: list[int]) -> None:
    """One change, in turn an added, a changed and a removed image."""
    info = SimpleNamespace(width=640, height=480, format="JPEG", captured_at=None, camera=None, warnings=[],
                           jpeg_quality=None)
    vector = collection.spare[step]  # from the collection's own clusters
    kind = ("add", "change", "remove")[step % 3]
    if kind == "add":
        row_id = tx.write_image(None, f"/synthetic/new/img-{step:05d}.jpg", "/synthetic", 1, step, f"new{step}",
                                info, vector)
        next_id[0] = row_id + 1
    else:
        live = collection.ids()
        row_id = int(rng.choice(live[live < next_id[0]]))
        if kind == "change":
            tx.write_image(row_id, f"/synthetic/changed/img-{row_id:07d}.jpg", "/synthetic", 2, step,
                           f"changed{step}", info, vector)
        else:
            tx.delete([row_id])
            vector = None
    collection.set(row_id, vector)


def run_changes(store: Store, vectors, collection: Collection, steps: range, rng, *, deferred: DeferredSaves | None,
                next_id: list[int], queries: int, checkpoints=()) -> tuple:
    """One change per step, each its own transaction and sync (deferred, or saved at once);
    returns (vectors, figures)."""
    commit_bytes = sync_bytes = 0
    seconds, saves, recalls = [], 0, {}
    writes = IndexWrites(store.dir).__enter__()
    for done, step in enumerate(steps, 1):
        saved = _file_id(store.dir / FAISS_NAME)
        started, before = time.perf_counter(), write_bytes()
        with WriterLock(store.dir / "writer.lock"):
            vectors = deferred.open(store, store.manifest()) if deferred else vectors
            with store.transaction() as tx:
                make_change(tx, step, collection, rng, next_id)
            committed = write_bytes()
            if deferred:
                deferred.finish(store, vectors)
                vectors = deferred.vectors
            else:
                vectors = sync_and_save(store, vectors)
            # The watcher's changes come seconds apart: its writer's connection has closed in between.
            close_lease(str(store.db_path))
        after = write_bytes()
        seconds.append(time.perf_counter() - started)
        commit_bytes += committed - before
        sync_bytes += after - committed
        saves += _file_id(store.dir / FAISS_NAME) != saved
        if done in checkpoints:
            recalls[done] = recall(vectors, collection, pick_queries(collection, queries, rng))
    writes.__exit__()
    return vectors, {
        "changes": len(steps), "saves": saves, "written_mb": round((commit_bytes + sync_bytes) / 2**20, 2),
        "duckdb_commits_mb": round(commit_bytes / 2**20, 2), "index_sync_mb": round(sync_bytes / 2**20, 2),
        "index_files_mb": round(writes.bytes / 2**20, 2),
        "seconds_p50": round(float(np.percentile(seconds, 50)), 3),
        "seconds_p95": round(float(np.percentile(seconds, 95)), 3), "recall_at_10": recalls}


def _file_id(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def same_training_lists(vectors, store: Store, path: Path):
    """The folded index's training (quantizer, scalar quantizer) with its lists written fresh
    from DuckDB: what a build would make had it trained the same."""
    import faiss

    base = vectors.index.base
    empty = faiss.deserialize_index(faiss.serialize_index(base), faiss.IO_FLAG_SKIP_IVF_DATA)
    ivf = faiss.extract_index_ivf(empty)
    lists = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.replace_invlists(lists, True)
    lists.this.disown()
    ivf.ntotal = empty.ntotal = 0
    write_lists(empty, lambda: store.embedding_chunks(STREAM_CHUNK), path)
    faiss.extract_index_ivf(empty).nprobe = faiss.extract_index_ivf(base).nprobe
    return empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="delta-bench-"))
    rng = np.random.default_rng(7)

    started = time.perf_counter()
    vectors0 = clustered_unit_vectors(args.n + 2 * args.changes, DIM, seed=args.n)
    store_dir = work / f"store-{args.n}"
    shutil.rmtree(store_dir, ignore_errors=True)
    build_store(store_dir, vectors0[:args.n], IDENTITY)
    emit(figure="store_write_s", n=args.n, value=round(time.perf_counter() - started, 1))
    started = time.perf_counter()
    built = reindex(store_dir, index_type="auto", memory_budget=BUDGET_PER_VECTOR * args.n)
    data = data_file(built.index.base)
    emit(figure="index_build_s", n=args.n, value=round(time.perf_counter() - started, 1),
         index_type=built.index_type, on_disk=built.choice.on_disk, nlist=built.choice.nlist,
         params=built.choice.params, tuned_recall_at_10=built.choice.recall,
         data_file_mb=round(data.stat().st_size / 2**20, 1),
         index_file_mb=round((store_dir / FAISS_NAME).stat().st_size / 2**20, 2),
         base_file_mb=round(base_path(data).stat().st_size / 2**20, 2))
    del built
    collection = Collection(vectors0, args.n, room=2 * args.changes)
    del vectors0
    store = Store(store_dir, read_only=False)
    before = (data.name, data.stat().st_mtime_ns)
    next_id = [args.n + 1]

    deferred = DeferredSaves()  # as `index --watch`: saved when due (a minute), and at the end
    with WriterLock(store_dir / "writer.lock"):
        deferred.vectors = deferred.open(store, store.manifest())
    vectors, watcher = run_changes(store, deferred.vectors, collection, range(args.changes), rng, deferred=deferred,
                                   next_id=next_id, queries=args.queries, checkpoints=(args.changes // 2, args.changes))
    io = write_bytes()
    with WriterLock(store_dir / "writer.lock"), IndexWrites(store_dir) as writes:
        deferred.finish(store, deferred.open(store, store.manifest()), force=True)  # the watch's end
    watcher["final_save_mb"] = round((write_bytes() - io) / 2**20, 2)
    watcher["final_save_index_file_mb"] = round(writes.bytes / 2**20, 2)
    watcher["written_mb"] = round(watcher["written_mb"] + watcher["final_save_mb"], 2)
    emit(figure="watcher_changes", n=args.n, **watcher)

    vectors, each = run_changes(store, deferred.vectors, collection, range(args.changes, 2 * args.changes), rng,
                                deferred=None, next_id=next_id, queries=args.queries, checkpoints=(args.changes,))
    each["index_file_mb"] = round((store_dir / FAISS_NAME).stat().st_size / 2**20, 2)
    emit(figure="saved_each_change", n=args.n, **each)
    after = (data_file(vectors.index.base).name, data_file(vectors.index.base).stat().st_mtime_ns)
    emit(figure="data_file_untouched", n=args.n, value=after == before, delta_entries=vectors.index.pending,
         files=sorted(p.name for p in store_dir.glob(f"*{DATA_SUFFIX}")))

    final_queries = pick_queries(collection, args.queries, rng)
    during = recall(vectors, collection, final_queries)
    started = time.perf_counter()
    fresh = rebuild(Store(store_dir), store.manifest())  # read-only: in a private folder, the store untouched
    fresh_seconds = time.perf_counter() - started
    depth = dataclasses.replace(fresh.choice, params=vectors.choice.params)
    same_depth = SimpleNamespace(index=fresh.index, choice=depth)
    emit(figure="recall_at_10_during_changes_vs_fresh_build", n=args.n, queries=len(final_queries),
         delta_entries=vectors.index.pending, during=during, during_params=vectors.choice.params,
         fresh=recall(fresh, collection, final_queries), fresh_params=fresh.choice.params,
         fresh_at_the_same_depth=recall(same_depth, collection, final_queries), fresh_build_s=round(fresh_seconds, 1),
         note="queries: every vector changed or added, then random ones; the fresh build's own depth is tuned anew")

    started, io = time.perf_counter(), write_bytes()
    with WriterLock(store_dir / "writer.lock"):
        fold_delta(store, vectors)  # what a save past the bound does (2% of the collection)
        vectors = sync_and_save(store, vectors)
    folded_ids = vectors.ids()
    emit(figure="fold", n=args.n, seconds=round(time.perf_counter() - started, 1),
         written_mb=round((write_bytes() - io) / 2**20, 1), ids_equal_store=bool(np.array_equal(
             folded_ids, store.live_ids())), ids_equal_fresh_build=bool(np.array_equal(folded_ids, fresh.ids())))
    same = same_training_lists(vectors, store, work / f"same-training{DATA_SUFFIX}")
    queries = collection.vectors[final_queries - 1]
    params = search_parameters(vectors.index, vectors.choice)
    _, folded = vectors.index.search(queries, K, params=params)
    _, written = same.search(queries, K)
    identical = np.mean([set(a) == set(b) for a, b in zip(folded, written, strict=True)])
    emit(figure="folded_vs_fresh", n=args.n, same_top10_as_lists_written_fresh_same_training=round(float(identical), 4),
         folded=recall(vectors, collection, final_queries), fresh_build=recall(fresh, collection, final_queries))
    (work / f"same-training{DATA_SUFFIX}").unlink(missing_ok=True)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
