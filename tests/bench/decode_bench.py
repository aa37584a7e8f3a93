"""Decoding cost per image and format, on the same files in one run; one JSON line per format.

    python tests/bench/decode_bench.py FOLDER [--rounds 3]

For each file: `load_image` as indexing calls it (default mode: JPEG at reduced DCT scale, the
fast decoders of indexer/imaging/fast_decode.py), Pillow alone doing the same work (open, decode at the
same draft scale, the same integer reduction: what the pipeline cost before the fast paths), and,
where installed, libvips (pyvips: shrink-on-load for JPEG and WebP) as a candidate. Progressive
JPEG copies of the folder's JPEGs are made in a scratch folder. Best of `--rounds`, one thread.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: F401 - the pipeline decodes with torch loaded (the WebP fast path needs it)
from PIL import Image

from vitsearch.indexer.imaging.images import load_image

DRAFT = 538  # twice the model's resize target: what default-mode indexing asks for


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def pillow_alone(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("RGB", (DRAFT, DRAFT))
    image.load()
    factor = min(image.size) // DRAFT
    if factor >= 2:
        image.reduce(factor)


def vips(data: bytes, kind: str) -> None:
    import pyvips

    header = pyvips.Image.new_from_buffer(data, "", access="sequential")
    factor = max(1, min(header.width, header.height) // DRAFT)
    if kind in ("jpeg", "progressive jpeg"):
        shrink = max(s for s in (1, 2, 4, 8) if s <= factor)
        image = pyvips.Image.new_from_buffer(data, "", access="sequential", shrink=shrink)
    elif kind == "webp":
        image = pyvips.Image.new_from_buffer(data, "", access="sequential", scale=1.0 / factor)
    else:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential")
    image.write_to_memory()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import pyvips

        pyvips.concurrency_set(1)
        have_vips = True
    except (ImportError, OSError):
        have_vips = False
    files: dict[str, list[bytes]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for path in sorted(args.folder.iterdir()):
            kind = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}.get(path.suffix.lower())
            if kind is None:
                continue
            data = path.read_bytes()
            files.setdefault(kind, []).append(data)
            if kind == "jpeg":
                progressive = Path(scratch) / f"{path.stem}-progressive.jpg"
                Image.open(io.BytesIO(data)).save(progressive, quality=90, progressive=True)
                files.setdefault("progressive jpeg", []).append(progressive.read_bytes())
    for kind, blobs in files.items():
        ours = [best(lambda d=d: load_image(d, draft_size=DRAFT), args.rounds) for d in blobs]
        pillow = [best(lambda d=d: pillow_alone(d), args.rounds) for d in blobs]
        figure = {"figure": "decode", "format": kind, "files": len(blobs),
                  "ours_ms": round(1000 * statistics.mean(ours), 1),
                  "pillow_alone_ms": round(1000 * statistics.mean(pillow), 1),
                  "ours_vs_pillow": round(statistics.mean(pillow) / statistics.mean(ours), 2)}
        if have_vips:
            candidate = [best(lambda d=d, k=kind: vips(d, k), args.rounds) for d in blobs]
            figure.update(vips_ms=round(1000 * statistics.mean(candidate), 1),
                          vips_vs_ours=round(statistics.mean(ours) / statistics.mean(candidate), 2))
        print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()
