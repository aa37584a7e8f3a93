"""Why similar: for an image made of one photo's left half and another's right half, explaining
the first photo against it scores the left half higher (and the second photo, the right half);
the grid maps onto the target's pixels and the heat map is written over the target."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli, sample_photo, write_scenes
from vitsearch.indexer import build_index
from vitsearch.search import ImageIndex

SIZE = (480, 320)  # wider than tall: the model sees the central square


@pytest.fixture(scope="module")
def halves(tmp_path_factory, random_encoder):
    root = tmp_path_factory.mktemp("explain")
    write_scenes(root / "photos", range(4))
    left = sample_photo("chelsea.png").resize(SIZE)
    right = sample_photo("coffee.png").resize(SIZE)
    left.save(root / "left.png")
    right.save(root / "right.png")
    half = left.copy()
    half.paste(right.crop((SIZE[0] // 2, 0, *SIZE)), (SIZE[0] // 2, 0))
    half.save(root / "half.png")
    build_index([root / "photos"], root / "store", encoder=random_encoder)
    return root


def half_means(grid) -> tuple[float, float]:
    grid = np.asarray(grid)
    cols = grid.shape[1]
    return float(grid[:, : cols // 2].mean()), float(grid[:, cols // 2:].mean())


def rows_favouring_left(grid) -> float:
    grid = np.asarray(grid)
    cols = grid.shape[1]
    return float((grid[:, : cols // 2].mean(axis=1) > grid[:, cols // 2:].mean(axis=1)).mean())


def test_the_matching_half_scores_higher(halves, random_encoder):
    index = ImageIndex.open(halves / "store", encoder=random_encoder)
    by_left = index.explain(str(halves / "left.png"), str(halves / "half.png"))
    by_right = index.explain(str(halves / "right.png"), str(halves / "half.png"))
    assert (by_left.rows, by_left.cols) == (16, 16)
    # Random weights squeeze cosines towards 1 (attention mixes every token with the whole
    # image): the order of the halves is the signal, row by row.
    left_half, right_half = half_means(by_left.grid)
    assert left_half > right_half and rows_favouring_left(by_left.grid) >= 0.9, (left_half, right_half)
    left_half, right_half = half_means(by_right.grid)
    assert right_half > left_half and rows_favouring_left(by_right.grid) <= 0.1, (left_half, right_half)
    own = index.explain(str(halves / "left.png"), str(halves / "left.png"))
    assert np.allclose(own.grid, 1.0, atol=1e-4), "every patch matches itself"
    assert abs(own.score - 1.0) < 1e-5
    embeddings = index.embed_many([str(halves / "left.png"), str(halves / "half.png")])
    assert abs(by_left.score - float(embeddings[0] @ embeddings[1])) < 1e-4


def test_cells_map_onto_the_targets_pixels(halves, random_encoder):
    index = ImageIndex.open(halves / "store", encoder=random_encoder)
    explanation = index.explain(str(halves / "left.png"), str(halves / "half.png"))
    assert (explanation.width, explanation.height) == SIZE
    x0, y0, x1, y1 = explanation.box
    # timm's eval transform: short side to floor(256 / 0.95) = 269, then the central 256 square
    side = 256 * 320 / 269
    assert np.allclose((x0, y0, x1, y1), ((480 - side) / 2, (320 - side) / 2, (480 + side) / 2, (320 + side) / 2))
    assert np.allclose(explanation.cell_box(15, 15)[2:], (x1, y1))
    assert np.allclose(explanation.cell_box(0, 8)[0], 240.0), "the middle column boundary is the seam"


def test_cli_json_and_heat_map(halves):
    out = halves / "heat.png"
    result = run_cli("explain", halves / "left.png", halves / "half.png", "--store", halves / "store",
                     "--json", "--out", out)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert {"grid", "width", "height", "box", "score"} <= record.keys()
    assert (record["width"], record["height"]) == SIZE and len(record["grid"]) == 16
    left_half, right_half = half_means(record["grid"])
    assert left_half > right_half
    with Image.open(out) as heat:
        assert heat.size == SIZE
    text = run_cli("explain", halves / "left.png", "id:1", "--store", halves / "store")
    assert text.returncode == 0 and text.stdout.startswith("score ") and len(text.stdout.splitlines()) == 17
