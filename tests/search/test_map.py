"""The collection map and outliers: every live image gets a place (the two principal axes of the
embeddings, cached until the collection changes), and a planted unrelated image (noise, then a
line drawing) ranks among the three most unusual of a folder of photos."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.conftest import run_cli, scene_bytes, write_photos
from vitsearch.indexer import build_index
from vitsearch.indexer.store.store import Store
from vitsearch.search import ImageIndex
from vitsearch.search.collection_map import map_cache_path

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg")


def drawing(path: Path) -> None:
    image = Image.new("RGB", (320, 240), "white")
    pen = ImageDraw.Draw(image)
    for i in range(8):
        pen.line((i * 40, 0, 320 - i * 30, 240), fill="black", width=3)
    pen.ellipse((100, 60, 220, 180), outline="black", width=4)
    image.save(path)


@pytest.fixture(scope="module")
def collection(tmp_path_factory, random_encoder):
    root = tmp_path_factory.mktemp("map")
    folder = root / "photos"
    write_photos(folder, PHOTOS, quality=90)
    noise = np.random.default_rng(1).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "planted-noise.png")
    build_index([folder], root / "store", encoder=random_encoder)
    return root


def live(store: Path) -> dict[int, np.ndarray]:
    ids, vectors = Store(store).embeddings()
    return dict(zip(ids.tolist(), vectors, strict=True))


def test_map_places_every_live_image_on_the_principal_axes(collection):
    """PCA: what huge stores (and installs without umap-learn) get."""
    result = run_cli("map", "--store", collection / "store", "--json", "--method", "pca")
    assert result.returncode == 0, result.stderr
    points = [json.loads(line) for line in result.stdout.splitlines()]
    vectors = live(collection / "store")
    assert sorted(p["id"] for p in points) == sorted(vectors)
    assert all({"id", "path", "x", "y"} <= p.keys() and np.isfinite([p["x"], p["y"]]).all() for p in points)
    matrix = np.stack([vectors[p["id"]] for p in points]).astype(np.float64)
    centred = matrix - matrix.mean(axis=0)
    axes = np.linalg.svd(centred, full_matrices=False)[2][:2]
    expected = centred @ axes.T
    got = np.array([[p["x"], p["y"]] for p in points])
    for axis in range(2):  # an axis's sign is a convention
        same, flipped = got[:, axis] - expected[:, axis], got[:, axis] + expected[:, axis]
        assert min(np.abs(same).max(), np.abs(flipped).max()) < 1e-4
    assert map_cache_path(Store(collection / "store")).exists()
    assert not [p for p in (collection / "store").iterdir() if "map" in p.name], "readers never write the store"


def test_outliers_rank_a_planted_unrelated_image_in_the_top_three(collection, random_encoder):
    result = run_cli("outliers", "--store", collection / "store", "-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    ranked = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(ranked) == 3 and all({"id", "path", "score"} <= r.keys() for r in ranked)
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert any(r["path"].endswith("planted-noise.png") for r in ranked), ranked
    # The collection changes: the map follows (its cache was of the older generation) and the
    # next planted image is found as well.
    folder = collection / "photos"
    shutil.move(folder / "planted-noise.png", collection / "noise-away.png")
    drawing(folder / "planted-drawing.png")
    build_index([folder], collection / "store", encoder=random_encoder)
    index = ImageIndex.open(collection / "store", encoder=random_encoder)
    assert {p.id for p in index.map("pca")} == set(live(collection / "store"))
    assert any(path.endswith("planted-drawing.png") for _, path, _ in index.outliers(3))


def test_the_map_page_holds_every_image_and_its_neighbours(collection, tmp_path):
    out = tmp_path / "map.html"
    result = run_cli("map", "--store", collection / "store", "--out", out, "--method", "pca")
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    start = page.index("const D = ") + len("const D = ")
    data = json.loads(page[start:page.index(";\n", start)])
    assert sorted(p[0] for p in data["points"]) == sorted(live(collection / "store"))
    assert all(str(p[0]) in data["thumbs"] for p in data["points"]), "a small collection is all thumbnails"
    first = str(data["points"][0][0])
    assert len(data["neighbours"][first]) == min(6, len(data["points"]) - 1)
    assert data["outliers"], "the most unusual images are marked"


@pytest.mark.slow  # umap-learn compiles its kernels with numba on first use (~30 s here)
def test_umap_places_every_image_and_keeps_copies_together(collection, random_encoder):
    pytest.importorskip("umap", reason="UMAP is the `map` extra: pip install -e '.[map]'")
    folder = collection / "photos"
    shutil.copy(folder / "chelsea.jpg", folder / "chelsea-copy.jpg")
    Image.open(folder / "coffee.jpg").resize((400, 266)).save(folder / "coffee-small.jpg", quality=80)
    build_index([folder], collection / "store", encoder=random_encoder)
    index = ImageIndex.open(collection / "store", encoder=random_encoder)
    points = {Path(p.path).name: np.array([p.x, p.y]) for p in index.map("umap")}
    assert len(points) == len(live(collection / "store"))

    # A copy lands beside its original, far closer than the layout's typical spacing. Not always
    # its single nearest point: UMAP spaces a tight cluster's members about evenly (min_dist), and
    # which of them sits closest depends on row order and umap-learn's version.
    xy = np.array(list(points.values()))
    spread = np.median(np.linalg.norm(xy[:, None] - xy[None], axis=-1)[np.triu_indices(len(xy), 1)])
    for copy, original in (("chelsea-copy.jpg", "chelsea.jpg"), ("coffee-small.jpg", "coffee.jpg")):
        by_distance = sorted((n for n in points if n != copy), key=lambda n: np.linalg.norm(points[n] - points[copy]))
        assert original in by_distance[:2], (copy, by_distance[:3])
        assert np.linalg.norm(points[copy] - points[original]) < 0.2 * spread, (copy, points, spread)
    with np.load(map_cache_path(Store(collection / "store"))) as cached:
        assert str(cached["method"]) == "umap"
    again = {Path(p.path).name: np.array([p.x, p.y]) for p in index.map("auto")}  # auto is UMAP here: cached
    assert all(np.array_equal(again[name], points[name]) for name in points)


def test_the_map_page_keeps_hostile_file_names_as_data(tmp_path, fake_encoder):
    """A name that opens an HTML comment and a script inside the page's <script> element would
    keep it open (a blank page); names like the page's placeholders must stay names."""
    folder = tmp_path / "photos"
    names = ["<!--<script>.jpg", "__TITLE__.jpg", "__DATA__.jpg", "a&b>c.jpg"]
    folder.mkdir()
    for seed, name in enumerate(names):
        (folder / name).write_bytes(scene_bytes(seed))
    build_index([folder], tmp_path / "store", encoder=fake_encoder)
    out = tmp_path / "map.html"
    result = run_cli("map", "--store", tmp_path / "store", "--out", out, "--method", "pca")
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    script = page[page.index("<script>") + len("<script>"):page.index("</script>")]
    assert "<!--" not in script and "<script" not in script, "the element would not close at its </script>"
    start = script.index("const D = ") + len("const D = ")
    embedded = script[start:script.index(";\n", start)]
    assert not set("<>&") & set(embedded), "embedded JSON writes <, > and & as \\u escapes"
    data = json.loads(embedded)
    assert sorted(data["names"].values()) == sorted(str(folder / name) for name in names)
    title = html.escape(f"vitsearch map: {len(names)} images in {tmp_path / 'store'}")
    assert page.count(title) == 1 and f"<title>{title}</title>" in page
