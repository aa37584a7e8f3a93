"""Benchmark: what the quality facts cost an indexing run, side by side in one process.

    python tests/bench/quality_cost.py [--photos 48] [--rounds 2] [--side 1024]

Writes real-looking photos (scikit-image's, resized to --side on the long edge), then indexes them
into fresh stores with the real architecture (random weights), alternating runs with the quality
facts measured as shipped and with the measuring replaced by a constant (the only difference), and
prints one JSON line: images/s of each, best of --rounds, and their ratio. docs/quality.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import sample_photo
from vitsearch.indexer import build_index
from vitsearch.indexer.imaging import signatures
from vitsearch.indexer.imaging.quality import Quality
from vitsearch.indexer.model.encoder import load_encoder

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "camera.png", "rocket.jpg",
          "ihc.png", "motorcycle_right.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--side", type=int, default=1024)
    args = parser.parse_args()
    encoder = load_encoder("random", device="cpu")
    measured = signatures.quality_of
    best = {"with": 0.0, "without": 0.0}
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "photos"
        folder.mkdir()
        for n in range(args.photos):
            photo = sample_photo(PHOTOS[n % len(PHOTOS)]).rotate(n % 4 * 90, expand=True)
            scale = args.side / max(photo.size)
            photo.resize((round(photo.width * scale), round(photo.height * scale))).save(folder / f"{n:03d}.jpg",
                                                                                      quality=90)
        build_index([folder], Path(work) / "warm", encoder=encoder)  # the compiled graph, caches, page cache
        for round_ in range(args.rounds):
            for mode in ("without", "with"):
                signatures.quality_of = measured if mode == "with" else (lambda *a: Quality(0.0, 0.0, 0.0, None))
                report = build_index([folder], Path(work) / f"{mode}-{round_}", encoder=encoder)
                best[mode] = max(best[mode], report.embedded / report.seconds)
        signatures.quality_of = measured
    print(json.dumps({"photos": args.photos, "side": args.side, "images_per_s_with": round(best["with"], 2),
                      "images_per_s_without": round(best["without"], 2),
                      "slowdown": round(1 - best["with"] / best["without"], 4)}))


if __name__ == "__main__":
    main()
