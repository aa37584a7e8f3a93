"""Write a benchmark folder of 2-24 MP photos in mixed JPEG (half of them progressive), PNG and WebP.

    python tests/bench/make_photos.py OUT_DIR [--count 64]

No photo collection can be downloaded here, so the sources are the public-domain photos that
scikit-image ships (astronaut, coffee, chelsea, rocket, ...), enlarged, cropped and re-encoded
so that each file has its own size and aspect. They decode like camera files of that size.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image

SOURCES = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
           "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "motorcycle_right.png", "color.png"]
MEGAPIXELS = [2, 3, 4, 6, 8, 12, 16, 24]


def write_photos(out: Path, count: int) -> list[Path]:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = []
    for i in range(count):
        source = Image.open(folder / SOURCES[i % len(SOURCES)]).convert("RGB")
        megapixels = MEGAPIXELS[i % len(MEGAPIXELS)]
        aspect = [4 / 3, 3 / 2, 16 / 9, 1.0][i % 4] * (1 if i % 5 else -1)
        aspect = abs(aspect) if aspect > 0 else 1 / abs(aspect)
        height = int(math.sqrt(megapixels * 1e6 / aspect))
        width = int(height * aspect)
        scale = max(width / source.width, height / source.height)
        big = source.resize((math.ceil(source.width * scale), math.ceil(source.height * scale)),
                            Image.Resampling.BICUBIC)
        left = int(rng.integers(0, big.width - width + 1))
        top = int(rng.integers(0, big.height - height + 1))
        photo = big.crop((left, top, left + width, top + height))
        if (i // 40) % 2:  # the (source, size, format) cycle repeats every 40: keep every file distinct
            photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        photo = Image.eval(photo, lambda v, k=1 + 0.03 * (i // 80): min(255, int(v * k)))
        fmt, ext, options = [("JPEG", "jpg", {"quality": 90}), ("JPEG", "jpg", {"quality": 85, "progressive": True}),
                             ("PNG", "png", {"compress_level": 6}), ("WEBP", "webp", {"quality": 85})][i % 4]
        path = out / f"photo-{i:03d}-{megapixels}mp.{ext}"
        photo.save(path, fmt, **options)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=64)
    args = parser.parse_args()
    paths = write_photos(Path(args.out), args.count)
    print(f"wrote {len(paths)} photos to {args.out}")


if __name__ == "__main__":
    main()
