"""Web page latency: upload-to-gallery in a real browser, and 8 concurrent API clients for a
minute against a store of 10k images. One JSON line per figure.

    python tests/bench/ui_latency.py [--images 10000] [--clients 8] [--seconds 60] [--workdir DIR]

The store's rows point at real JPEG files (generated scenes, so thumbnails are real work) but
carry synthetic embeddings (clustered unit vectors): indexing 10k files with the model would
take half an hour here, and search latency does not depend on what the vectors mean. Queries
are uploads, which run the real model (random weights) like a user's drop would.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import httpx
import numpy as np

from tests.bench.search_bench import build_store
from tests.bench.synthetic import clustered_unit_vectors
from tests.e2e.test_ui import CHROMIUM, CHROMIUM_FLAGS
from vitsearch.ui.samples import make_scene


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def make_store(work: Path, count: int) -> Path:
    from vitsearch.indexer.model.encoder import encoder_identity, load_encoder
    from vitsearch.indexer.reindex import reindex

    store, photos = work / "store", work / "photos"
    if (store / "metadata.duckdb").exists():
        return store
    paths = []
    for i in range(count):
        path = photos / f"{i // 1000:02d}" / f"scene-{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_scene(i, (240, 180)).save(path, quality=85)
        paths.append(str(path))
    identity = encoder_identity(load_encoder("random", device="cpu"))
    build_store(store, clustered_unit_vectors(count, seed=7), identity, paths=paths, root=str(photos))
    reindex(store)
    return store


def start_server(store: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "vitsearch.ui.cli", "serve", "--store", str(store), "--port", str(port)]
    server = subprocess.Popen(command,
                              cwd=REPO, env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError("server did not start")


def browser_upload_to_gallery(url: str, queries: list[Path]) -> None:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        for query in queries:
            page.goto(url)  # a fresh page per upload, as a new visitor would have
            page.wait_for_selector("#query-image input[type=file]", state="attached")
            started = time.perf_counter()
            page.set_input_files("#query-image input[type=file]", str(query))
            page.wait_for_function(
                "document.querySelectorAll('#results-gallery .caption-label').length > 0", timeout=120_000)
            times.append(1000 * (time.perf_counter() - started))
        browser.close()
    emit(figure="browser_upload_to_gallery_ms", uploads=len(times), first=round(times[0]),
         p50=round(float(np.median(times))), all=[round(t) for t in times])


def concurrent_clients(url: str, queries: list[Path], clients: int, seconds: float) -> None:
    from gradio_client import Client, handle_file

    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def worker(number: int) -> None:
        client = Client(url, verbose=False)
        rng = np.random.default_rng(number)
        while time.monotonic() < deadline:
            query = queries[int(rng.integers(len(queries)))]
            started = time.perf_counter()
            try:
                client.predict(handle_file(str(query)), None, 12, 0.0, "", "", "", None, None, [],
                               api_name="/run_search")
                latencies.append(1000 * (time.perf_counter() - started))
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(repr(e)[:200])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emit(figure="api_concurrent_search_ms", clients=clients, seconds=seconds, requests=len(latencies),
         errors=len(errors), p50=round(float(np.percentile(latencies, 50))),
         p95=round(float(np.percentile(latencies, 95))), requests_per_s=round(len(latencies) / seconds, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workdir")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vitsearch-ui-bench-"))
    started = time.perf_counter()
    store = make_store(work, args.images)
    emit(figure="store_ready_s", images=args.images, value=round(time.perf_counter() - started, 1))
    queries = sorted((work / "photos").rglob("*.jpg"))[:: max(1, args.images // 50)][:50]
    server, url = start_server(store)
    try:
        browser_upload_to_gallery(url, queries[:5])
        concurrent_clients(url, queries, args.clients, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
