"""Benchmark: a watched library at scale. A new photo written -> searchable by a reader, the
watcher's CPU-seconds and bytes written per change, and its CPU and writes when idle.

    python tests/bench/watch_scale.py [--files 100000] [--per-folder 10] [--changes 40] [--idle 60]
                                      [--dim 512] [--workdir DIR] [--source DIR]

The library is `--files` tiny PNGs in folders of `--per-folder` (tests/bench/noop_reindex.py's).
`--source DIR` reuses a noop_reindex.py workdir (its images/ and a store of them made with the fake
encoder): the tree is hard-linked into this run's workdir (only new files are written) and the store
copied, its rows renamed to the links (made with the same --dim). The watcher is IndexWatcher with
the fake encoder (its vectors projected to the model's 512 dimensions, so the index the watcher keeps
and saves is the real size), in a child process: at this scale the model is not the point, and a
real one adds its own embedding time to each photo (watch_latency.py measures that). A reader
holds the store as `serve` does (ImageIndex, refreshed before each search); a photo is searchable
once a search with its own vector finds it.
The latency includes the 1.5 s of quiet the watcher waits for. For each change the watcher's
CPU-seconds (utime+stime of all its threads, /proc/PID/stat) and write_bytes (/proc/PID/io) are
counted from the write until it has been quiet for 1 s. One JSON line per figure.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np
from PIL import Image

from tests.bench.noop_reindex import WideFakeEncoder, write_tiny_images
from tests.conftest import FakeEncoder
from tests.e2e.test_watch_targeted import cpu_seconds, written_bytes


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def fake_encoder(dim: int) -> FakeEncoder:
    return WideFakeEncoder(dim) if dim != FakeEncoder.dim else FakeEncoder()


def child(root: str, store: str, ready: str, dim: str) -> None:
    """The watcher: IndexWatcher with the fake encoder, until SIGTERM."""
    import vitsearch.indexer.watch as watch

    watch.load_store_encoder = lambda *args, **kwargs: fake_encoder(int(dim))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    watcher = watch.IndexWatcher([root], store)
    started = time.perf_counter()
    report = watcher.sync()
    Path(ready).write_text(json.dumps({"first_sync_s": round(time.perf_counter() - started, 2),
                                       "unchanged": report.unchanged, "added": report.added}))
    watcher.follow(stop, log=lambda line: print(line, file=sys.stderr, flush=True))


def photo(seed: int, dim: int) -> tuple[bytes, np.ndarray]:
    """A tiny PNG like the library's and the vector the fake encoder gives it."""
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    encoder = fake_encoder(dim)
    return buffer.getvalue(), encoder.encode([encoder.preprocess(Image.fromarray(pixels))])[0]


def searchable(reader, vector: np.ndarray, path: Path) -> bool:
    reader.refresh()
    return any(hit.path == str(path) for hit in reader.search(vector, k=3))


def quiet(pid: int, seconds: float = 1.0) -> None:
    """Wait until the process has used no CPU for `seconds`."""
    last = cpu_seconds(pid)
    while True:
        time.sleep(seconds)
        now = cpu_seconds(pid)
        if now == last:
            return
        last = now


def prepare(args) -> tuple[Path, Path]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vitsearch-watch-scale-"))
    folder, store = work / "images", work / "store"
    if not folder.exists():
        work.mkdir(parents=True, exist_ok=True)
        if args.source:
            source = Path(args.source).resolve()
            subprocess.run(["cp", "-al", str(source / "images"), str(folder)], check=True)
            shutil.copytree(source / "store", store)
            _moved_store(store, str(source / "images"), str(folder))
        else:
            write_tiny_images(folder, args.files, args.per_folder)
    return folder, store


def _moved_store(store: Path, old: str, new: str) -> None:
    """The copied store's rows name the linked tree (the same files, the same stat) instead of
    the source's, as if the source had been indexed where the link is."""
    from vitsearch.indexer.store.store import Store

    with Store(store, read_only=False).connect() as con:
        con.execute("UPDATE images SET path = ? || substr(path, ?), root = ? WHERE root = ?",
                    [new, len(old) + 1, new, old])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--per-folder", type=int, default=10)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle watcher measured")
    parser.add_argument("--dim", type=int, default=512, help="of the fake vectors (the model's: 512)")
    parser.add_argument("--workdir")
    parser.add_argument("--source", help="a noop_reindex.py workdir to reuse (images/ and store/)")
    parser.add_argument("--child", nargs=4, metavar=("ROOT", "STORE", "READY", "DIM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    folder, store = prepare(args)
    ready = folder.parent / "ready.json"
    ready.unlink(missing_ok=True)
    started = time.perf_counter()
    watcher = subprocess.Popen([sys.executable, __file__, "--child", str(folder), str(store), str(ready),
                                str(args.dim)],
                               cwd=REPO, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(watcher.stderr), daemon=True).start()
    try:
        while not ready.exists():
            assert watcher.poll() is None, "".join(lines[-20:])
            time.sleep(0.2)
        first = json.loads(ready.read_text())
        emit(figure="watch_first_sync_s", files=first["unchanged"] + first["added"], value=first["first_sync_s"],
             with_start_s=round(time.perf_counter() - started, 1))
        run(args, watcher.pid, folder, store)
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=300)
    emit(figure="sigterm_exit_code", value=watcher.returncode, errors=[x for x in lines if "failed" in x][:5])


def run(args, pid: int, folder: Path, store: Path) -> None:
    from vitsearch.search import ImageIndex

    time.sleep(3)
    quiet(pid)
    cpu, written, started = cpu_seconds(pid), written_bytes(pid), time.monotonic()
    time.sleep(args.idle)
    seconds = time.monotonic() - started
    emit(figure="watch_idle", seconds=round(seconds, 1), cpu_percent_of_a_core=round(
        100 * (cpu_seconds(pid) - cpu) / seconds, 3), bytes_written=written_bytes(pid) - written)
    reader = ImageIndex.open(store, encoder=fake_encoder(args.dim))
    folders = sorted(p for p in folder.iterdir() if p.is_dir())
    rng = random.Random(34)
    run_id = time.time_ns()  # new names and contents on every run of a reused workdir
    latencies, cpus, writes = [], [], []
    for i in range(args.changes):
        data, vector = photo(run_id + i, args.dim)
        target = rng.choice(folders) / f"new-{run_id}-{i:04d}.png"
        cpu, written = cpu_seconds(pid), written_bytes(pid)
        target.write_bytes(data)
        written_at = time.perf_counter()
        while not searchable(reader, vector, target):
            time.sleep(0.05)
        latencies.append(time.perf_counter() - written_at)
        quiet(pid)
        cpus.append(cpu_seconds(pid) - cpu)
        writes.append(written_bytes(pid) - written)
    emit(figure="watch_new_photo_searchable_s", changes=args.changes, p50=round(float(np.percentile(latencies, 50)), 2),
         p95=round(float(np.percentile(latencies, 95)), 2), max=round(max(latencies), 2))
    emit(figure="watch_cpu_s_per_change", p50=round(float(np.percentile(cpus, 50)), 3),
         p95=round(float(np.percentile(cpus, 95)), 3), mean=round(float(np.mean(cpus)), 3))
    emit(figure="watch_bytes_written_per_change", p50=int(np.percentile(writes, 50)),
         p95=int(np.percentile(writes, 95)), mean=int(np.mean(writes)), max=int(max(writes)))


if __name__ == "__main__":
    main()
