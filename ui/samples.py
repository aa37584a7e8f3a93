"""Generated sample photos for the demo and tests: procedural scenes and their variants."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["make_scene", "write_samples"]


def make_scene(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A landscape-like picture: sky gradient, sun, hills, textured ground, a few objects."""
    rng = np.random.default_rng(seed)
    width, height = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, height)[:, None, None]
    sky = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1)
    image = Image.fromarray(sky.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    sun = rng.integers([0, 0, 20], [width, height // 2, 80])
    draw.ellipse([sun[0] - sun[2], sun[1] - sun[2], sun[0] + sun[2], sun[1] + sun[2]],
                 fill=tuple(int(v) for v in rng.integers(150, 256, 3)))
    for layer in range(3):
        base = height * (0.45 + 0.15 * layer)
        xs = np.linspace(0, width, 12)
        ys = base + rng.normal(0, height * 0.06, xs.size)
        colour = tuple(int(v) for v in rng.integers(0, 200, 3))
        draw.polygon([(0, height)] + list(zip(xs.tolist(), ys.tolist(), strict=False)) + [(width, height)], fill=colour)
    for _ in range(int(rng.integers(3, 9))):
        x, y = int(rng.integers(0, width)), int(rng.integers(height // 2, height))
        r = int(rng.integers(8, 40))
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape([x - r, y - 2 * r, x + r, y], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    noise = rng.normal(0, 8, (height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").filter(ImageFilter.GaussianBlur(0.6))


def write_samples(folder: str | Path, scenes: int = 12) -> list[Path]:
    """Scenes as JPEG, PNG and WebP, plus near-duplicates of the first few (resized, re-encoded)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    formats = [("jpg", "JPEG", {"quality": 90}), ("png", "PNG", {}), ("webp", "WEBP", {"quality": 90})]
    for seed in range(scenes):
        scene = make_scene(seed)
        ext, fmt, options = formats[seed % len(formats)]
        written.append(_save(scene, folder / f"scene-{seed:02d}.{ext}", fmt, options))
        if seed < 4:
            smaller = scene.resize((scene.width // 2, scene.height // 2), Image.Resampling.LANCZOS)
            written.append(_save(smaller, folder / "variants" / f"scene-{seed:02d}-small.jpg", "JPEG", {"quality": 70}))
    return written


def _save(image: Image.Image, path: Path, fmt: str, options: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    path.write_bytes(buffer.getvalue())
    return path
