"""Shared fixtures: generated images, a deterministic fake encoder, the real random-weight model."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitsearch.indexer.model.encoder import Encoder
from vitsearch.indexer.model.weights import WeightsInfo
from vitsearch.ui.samples import make_scene

REPO = Path(__file__).resolve().parent.parent

# Tests never reach the hub: the offline path must answer at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# The prepared-model cache (indexer.model.model_cache) of this run, shared with the CLI's child
# processes, never the user's own.
if "VITSEARCH_CACHE" not in os.environ:
    os.environ["VITSEARCH_CACHE"] = tempfile.mkdtemp(prefix="vitsearch-test-cache-")
    atexit.register(shutil.rmtree, os.environ["VITSEARCH_CACHE"], True)


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e/ is end to end: the inner loop (-m "not e2e and not slow") skips it."""
    e2e = Path(__file__).resolve().parent / "e2e"
    for item in items:
        if Path(str(item.fspath)).is_relative_to(e2e):
            item.add_marker(pytest.mark.e2e)


class FakeEncoder(Encoder):
    """Deterministic and cheap: a coarse colour layout as the embedding. Not the model."""

    model_name = "fake-colour-layout"
    dim = 48
    draft_size = 64

    def __init__(self, salt: str = "fake"):
        self.weights = WeightsInfo(f"fake:{salt}", f"fingerprint-{salt}")
        self.calls = 0

    def preprocess(self, image):
        small = image.convert("RGB").resize((4, 4), Image.Resampling.BOX)
        return np.asarray(small, dtype=np.float32).reshape(-1) / 255.0

    def encode(self, batch) -> np.ndarray:
        self.calls += len(batch)
        values = np.asarray(batch, dtype=np.float32) - 0.45
        return values / np.linalg.norm(values, axis=1, keepdims=True)

    def preprocess_config(self) -> dict:
        return {"layout": [4, 4]}


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture(scope="session")
def random_encoder():
    """The real architecture with the content-sensitive random weights (exact fp32)."""
    from vitsearch.indexer.model.encoder import load_encoder

    return load_encoder("random", device="cpu", exact=True)


def scene_bytes(seed: int, fmt: str = "JPEG", size=(320, 240), **options) -> bytes:
    buffer = io.BytesIO()
    make_scene(seed, size).save(buffer, fmt, **options)
    return buffer.getvalue()


def write_scenes(folder: Path, seeds, fmt: str = "JPEG", ext: str = "jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = folder / f"scene-{seed:03d}.{ext}"
        path.write_bytes(scene_bytes(seed, fmt))
        paths.append(path)
    return paths


def sample_photo(name: str) -> Image.Image:
    """One of the public-domain photos scikit-image ships (e.g. "chelsea.png"), as RGB."""
    import skimage

    return Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB")


def write_photos(folder: Path, names, quality: int = 92) -> list[Path]:
    """scikit-image's photos saved in `folder` as JPEGs named by their stem (chelsea.jpg, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / f"{Path(name).stem}.jpg"
        sample_photo(name).save(path, quality=quality)
        paths.append(path)
    return paths


def run_cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Run the real `vitsearch` command in a child process."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "vitsearch.ui.cli", *map(str, args)],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
