"""Duplicate tiers on real photos with the real architecture, and decisions that stick."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli
from vitsearch.indexer import build_index
from vitsearch.indexer.store.decisions import record_keeper, record_not_duplicates
from vitsearch.search import ImageIndex
from vitsearch.search.dupes import _components, find_duplicates

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg"]
# Random weights squeeze scores together (distinct photos here reach 0.964, copies 0.9997), so
# these tests set thresholds for that scale; the defaults are meant for the pretrained weights.
NEAR, SIMILAR = 0.99, 0.9


def _save(image: Image.Image, path: Path, fmt: str, **options) -> None:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    path.write_bytes(buffer.getvalue())


@pytest.fixture(scope="module")
def photo_store(tmp_path_factory, random_encoder):
    """Six real photos; the first two also as re-encoded and resized copies, one as an exact copy."""
    import skimage

    root = tmp_path_factory.mktemp("dupes")
    folder = root / "photos"
    folder.mkdir()
    source = Path(skimage.__file__).parent / "data"
    for name in PHOTOS:
        image = Image.open(source / name).convert("RGB")
        _save(image, folder / f"{Path(name).stem}.jpg", "JPEG", quality=95)
    for stem in ("astronaut", "chelsea"):
        image = Image.open(folder / f"{stem}.jpg")
        _save(image, folder / f"{stem}-reencoded.jpg", "JPEG", quality=60)
        half = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
        _save(half, folder / f"{stem}-half.webp", "WEBP", quality=80)
    shutil.copy(folder / "coffee.jpg", folder / "coffee-copy.jpg")
    store = root / "store"
    build_index([folder], store, encoder=random_encoder)
    return folder, store


def names(group) -> set[str]:
    return {Path(p).stem for p in group.paths}


def test_copies_land_in_one_near_group(photo_store, random_encoder):
    folder, store = photo_store
    index = ImageIndex.open(store, encoder=random_encoder)
    groups = find_duplicates(index, near=NEAR, similar=SIMILAR)
    by_tier = {tier: [names(g) for g in groups if g.tier == tier] for tier in ("identical", "near", "similar")}
    assert by_tier["identical"] == [{"coffee", "coffee-copy"}]
    assert {"astronaut", "astronaut-reencoded", "astronaut-half"} in by_tier["near"]
    assert {"chelsea", "chelsea-reencoded", "chelsea-half"} in by_tier["near"]
    assert not any({"astronaut", "chelsea"} <= g for g in by_tier["near"])
    astronaut = next(g for g in groups if g.tier == "near" and "astronaut" in names(g))
    assert Path(astronaut.paths[astronaut.ids.index(astronaut.keeper)]).stem == "astronaut", \
        "the suggested keeper is the largest"
    assert min(astronaut.scores) >= NEAR
    similar = [names(g) for g in groups if g.tier == "similar"]
    assert any({"chelsea", "coffee"} <= g for g in similar), "similar-looking photos form a looser tier"


def test_decisions_persist_across_runs_and_reindexing(photo_store, random_encoder):
    folder, store = photo_store
    index = ImageIndex.open(store, encoder=random_encoder)
    group = next(g for g in find_duplicates(index, near=NEAR, tiers=("near",)) if "chelsea" in names(g))
    ids = dict(zip((Path(p).stem for p in group.paths), group.ids, strict=False))
    record_not_duplicates(index.store.dir, [ids["chelsea"], ids["chelsea-half"]])
    record_keeper(index.store.dir, ids["chelsea-reencoded"])
    os.rename(folder / "chelsea-reencoded.jpg", folder / "chelsea-renamed.jpg")
    report = build_index([folder], store, encoder=random_encoder)
    assert report.moved == 1 and report.embedded == 0
    index = ImageIndex.open(store, encoder=random_encoder)
    chelsea = [g for g in find_duplicates(index, near=NEAR, tiers=("near",))
               if names(g) & {"chelsea", "chelsea-half"}]
    for group in chelsea:
        assert not {"chelsea", "chelsea-half"} <= names(group), "a 'not duplicates' pair stays apart"
    with_keeper = [g for g in chelsea if ids["chelsea-reencoded"] in g.ids]
    assert with_keeper and all(g.keeper == ids["chelsea-reencoded"] and g.keeper_decided for g in with_keeper)


def test_components_follow_chains_and_ignore_weak_edges():
    a = np.array([1, 2, 10, 20, 30])
    b = np.array([2, 3, 11, 21, 31])
    strong = np.array([True, True, True, False, True])
    assert _components(a, b, strong) == [[1, 2, 3], [10, 11], [30, 31]]


def test_a_vetoed_pair_never_shares_a_group_even_through_a_chain():
    a, b = np.array([1, 2, 1]), np.array([2, 3, 3])
    scores = np.array([0.99, 0.98, 0.97])
    groups = _components(a, b, np.ones(3, bool), scores, {(1, 3)})
    assert groups == [[1, 2]], "3 joins nothing: its link to 2 would bring it next to 1"


@pytest.mark.e2e  # the real CLI or model in child processes
def test_dupes_cli_json_and_histogram(tmp_path):
    from tests.search.test_search import write_varied_images

    folder = tmp_path / "photos"
    write_varied_images(folder, 40)
    shutil.copy(folder / "2020" / "img-00000.png", folder / "copy.png")
    store = tmp_path / "store"
    assert run_cli("index", folder, "--store", store, "--weights", "random").returncode == 0
    result = run_cli("dupes", "--store", store, "--json", "--tier", "identical")
    assert result.returncode == 0, result.stderr
    groups = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(groups) == 1 and groups[0]["tier"] == "identical" and len(groups[0]["ids"]) == 2
    assert {"tier", "ids", "paths", "scores", "keeper"} <= set(groups[0])
    histogram = run_cli("dupes", "--store", store, "--histogram")
    assert histogram.returncode == 0 and "0.95-1.00" in histogram.stdout
    counts = [int(line.split("\t")[1]) for line in histogram.stdout.splitlines()[1:]]
    assert sum(counts) == 41


@pytest.mark.e2e  # the real CLI or model in child processes
def test_search_cli_where_and_json(tmp_path):
    from tests.search.test_search import write_varied_images

    folder = tmp_path / "photos"
    write_varied_images(folder, 24)
    store = tmp_path / "store"
    assert run_cli("index", folder, "--store", store, "--weights", "random").returncode == 0
    query = folder / "2021" / "img-00001.png"
    result = run_cli("search", query, "--store", store, "--where", "folder LIKE '%/2022'", "--json", "-k", "50")
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0 and len(hits) == 6
    assert all("/2022/" in h["path"] for h in hits)
    assert [h["rank"] for h in hits] == list(range(1, 7))
    refused = run_cli("search", query, "--store", store, "--where", "1=1; DELETE FROM images")
    assert refused.returncode == 2 and "--where" in refused.stderr
    folder_query = run_cli("search", folder / "2020", "--store", store, "-k", "1", "--paths-only")
    assert len(folder_query.stdout.splitlines()) == 6, "one block per image in the folder"
    info = json.loads(run_cli("info", "--store", store, "--json").stdout)
    assert info["index_type"] == "flat"
    rebuilt = run_cli("reindex", "--store", store, "--index-type", "ivf-flat")
    assert rebuilt.returncode == 0, rebuilt.stderr


@pytest.mark.parametrize("where", [None, "width >= 400", "name LIKE 'chelsea%' OR format = 'WEBP'"])
def test_cli_search_is_brute_force_top_k_on_real_photos(photo_store, where):
    """`vitsearch search --json` against an oracle over the stored embeddings, with the store
    rebuilt with its own weights record (random) the way a user's store is."""
    from vitsearch.indexer.store.store import Store

    folder, store = photo_store
    with Store(store).connect() as con:
        rows = con.execute("SELECT id, path, width, format, embedding FROM images WHERE status = 'ok'").fetchall()
    by_path = {r[1]: r for r in rows}
    query = str(folder / "astronaut.jpg")
    args = ["search", query, "--store", store, "--json", "-k", "5"] + (["--where", where] if where else [])
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    got = [json.loads(line)["id"] for line in result.stdout.splitlines()]

    def keep(r):
        name = Path(r[1]).name
        return (where is None or (where.startswith("width") and r[2] >= 400)
                or (where.startswith("name") and (name.startswith("chelsea") or r[3] == "WEBP")))

    vector = np.asarray(by_path[query][4])
    scored = sorted(((float(np.dot(np.asarray(r[4]), vector)), r[0]) for r in rows if keep(r)),
                    key=lambda x: (-x[0], x[1]))
    assert got == [row_id for _, row_id in scored[:5]]
