"""Peak memory of an index run as the collection grows: it must stay flat (streamed batches).

    python tests/bench/memory_growth.py [--sizes 1000 10000] [--workdir DIR]

Each size is indexed into a fresh store by a child process with the fake encoder, so the
figures isolate what grows with the collection (scan, rows, hashes, batches, FAISS) from the
model's constant ~1 GB; the real model's run is in index_throughput.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.noop_reindex import write_tiny_images

CHILD = (
    "import json, sys; sys.path.insert(0, sys.argv[3])\n"
    "from indexer import build_index\nfrom tests.conftest import FakeEncoder\n"
    "from tests.bench.memory import peak_rss_mb\n"
    "report = build_index([sys.argv[1]], sys.argv[2], encoder=FakeEncoder(), batch_size=32)\n"
    "print(json.dumps({'added': report.added, 'seconds': report.seconds, 'peak_rss_mb': round(peak_rss_mb(), 1)}))\n"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--workdir")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vitsearch-memory-"))
    for size in args.sizes:
        folder = work / f"images-{size}"
        if not folder.exists():
            write_tiny_images(folder, size)
        result = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(work / f"store-{size}"), str(REPO)],
                                capture_output=True, text=True, check=True)
        print(json.dumps({"figure": "index_peak_rss_mb", "images": size, **json.loads(result.stdout)}), flush=True)


if __name__ == "__main__":
    main()
