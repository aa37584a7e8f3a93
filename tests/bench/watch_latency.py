"""Benchmark: `vitsearch index --watch`, file written -> searchable, and the watcher's memory.

    python tests/bench/watch_latency.py [--files 40] [--background 0] [--cycles 200] [--workdir DIR]
    python tests/bench/watch_latency.py --files 5 --minutes 60 --interval 2   # an hour of changes

Starts the real command (random weights) on a folder, then writes one new photo at a time and
times until it is in the store (p50/p95 over --files), then runs --cycles create/modify/delete
cycles and prints the watcher's resident memory before and after. `--minutes M` runs the churn
for M minutes instead (one change every --interval seconds), sampling the resident memory each
minute, and reports the growth over the second half (the first half is warm-up: caches fill).
`--background N` puts N tiny files in the tree first (every sync rescans it). One JSON line per figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np

from tests.bench.noop_reindex import write_tiny_images
from tests.conftest import scene_bytes
from vitsearch.indexer.store.store import Store


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def indexed(store: Path, path: Path) -> bool:
    with Store(store).connect() as con:
        return con.execute("SELECT count(*) FROM images WHERE path = ? AND status = 'ok'",
                           [str(path)]).fetchone()[0] == 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--background", type=int, default=0)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--minutes", type=float, help="churn for this long instead of --cycles")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between churn changes")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vitsearch-watch-"))
    folder, store = work / "photos", work / "store"
    folder.mkdir(parents=True, exist_ok=True)
    if args.background:
        write_tiny_images(folder / "library", args.background, per_folder=10)
    watcher = subprocess.Popen([sys.executable, "-m", "vitsearch.ui.cli", "index", str(folder), "--store",
                                str(store), "--weights", "random", "--watch"], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = time.perf_counter()
    while not (store / "vectors.faiss").exists():
        time.sleep(0.2)
    emit(figure="first_sync_s", background_files=args.background, value=round(time.perf_counter() - started, 1))
    time.sleep(1)
    latencies = []
    for i in range(args.files):
        target = folder / f"new-{i:04d}.jpg"
        written = time.perf_counter()
        target.write_bytes(scene_bytes(1000 + i, "JPEG", size=(1024, 768)))
        while not indexed(store, target):
            time.sleep(0.05)
        latencies.append(time.perf_counter() - written)
        time.sleep(0.5)
    emit(figure="watch_latency_s", files=args.files, background_files=args.background,
         p50=round(float(np.percentile(latencies, 50)), 2), p95=round(float(np.percentile(latencies, 95)), 2))
    before = rss_mb(watcher.pid)
    churn = folder / "churn"
    deadline = time.perf_counter() + 60 * args.minutes if args.minutes else None
    samples, next_sample, cycle = [(0.0, before)], time.perf_counter() + 60, 0
    while (cycle < args.cycles) if deadline is None else (time.perf_counter() < deadline):
        churn.mkdir(exist_ok=True)
        (churn / f"c-{cycle % 5}.jpg").write_bytes(scene_bytes(cycle % 50, "JPEG"))
        if cycle % 3 == 2:
            shutil.rmtree(churn)
        cycle += 1
        time.sleep(args.interval)
        if time.perf_counter() >= next_sample:
            samples.append((round((time.perf_counter() - started) / 60, 1), rss_mb(watcher.pid)))
            next_sample += 60
            if deadline is not None:
                emit(figure="watch_rss_sample", minute=samples[-1][0], rss_mb=samples[-1][1], changes=cycle)
    time.sleep(5)
    emit(figure="watch_rss_mb", cycles=cycle, before=before, after=rss_mb(watcher.pid))
    if deadline is not None and len(samples) >= 4:
        half = samples[len(samples) // 2:]
        emit(figure="watch_rss_growth_second_half", minutes=round(half[-1][0] - half[0][0], 1),
             mb=round(half[-1][1] - half[0][1], 1), max_mb=max(rss for _, rss in samples))
    watcher.send_signal(signal.SIGTERM)
    watcher.wait(timeout=300)
    emit(figure="sigterm_exit_code", value=watcher.returncode)


if __name__ == "__main__":
    main()
