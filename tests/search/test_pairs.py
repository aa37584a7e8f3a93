"""RAW+JPEG pairs: one photo with two files in search, kept together in duplicate review."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.formats import dng_bytes, encoded
from tests.indexer.test_formats import photo
from vitsearch.search import ImageIndex
from vitsearch.search.dupes import find_duplicates


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    folder = root / "DCIM"
    folder.mkdir()
    for name in ("astronaut", "chelsea", "coffee"):
        image = photo(name)
        (folder / f"IMG_{name}.JPG").write_bytes(encoded(image, "JPEG", quality=95))
        (folder / f"IMG_{name}.DNG").write_bytes(dng_bytes(image))
    (folder / "IMG_astronaut-copy.jpg").write_bytes(encoded(photo("astronaut"), "JPEG", quality=80))
    (folder / "lonely.dng").write_bytes(dng_bytes(photo("rocket")))
    store = root / "store"
    assert run_cli("index", folder, "--store", store, "--weights", "random").returncode == 0
    return folder, store


def test_search_shows_a_pair_as_one_photo_with_two_files(paired):
    folder, store = paired
    index = ImageIndex.open(store)
    hits = index.search(str(folder / "IMG_chelsea.JPG"), k=3)
    assert hits[0].path.endswith("IMG_chelsea.JPG") and hits[0].companions == (str(folder / "IMG_chelsea.DNG"),)
    assert all(not h.path.endswith("IMG_chelsea.DNG") for h in hits), "the pair is one hit"
    assert len(hits) == 3
    raw_only = index.search(str(folder / "IMG_chelsea.JPG"), k=10, where="format = 'RAW'")
    assert {h.path.rsplit("/", 1)[1] for h in raw_only} == {"IMG_astronaut.DNG", "IMG_chelsea.DNG",
                                                           "IMG_coffee.DNG", "lonely.dng"}
    result = run_cli("search", folder / "IMG_coffee.JPG", "--store", store, "-k", "1", "--json")
    assert json.loads(result.stdout)["companions"] == [str(folder / "IMG_coffee.DNG")]


def test_a_pair_is_never_a_duplicate_of_itself(paired):
    folder, store = paired
    groups = find_duplicates(ImageIndex.open(store), near=0.95, similar=0.9)
    names = [sorted(p.rsplit("/", 1)[1] for p in g.paths) for g in groups]
    assert ["IMG_chelsea.DNG", "IMG_chelsea.JPG"] not in names and ["IMG_coffee.DNG", "IMG_coffee.JPG"] not in names
    astronaut = next(g for g in groups if any("astronaut-copy" in p for p in g.paths))
    keeper = astronaut.paths[astronaut.ids.index(astronaut.keeper)]
    assert keeper.rsplit("/", 1)[1] in ("IMG_astronaut.JPG", "IMG_astronaut.DNG")
    partners = [astronaut.paths[astronaut.ids.index(i)] for i in astronaut.kept_with_keeper]
    assert len(partners) == 1 and partners[0].rsplit(".", 1)[0] == keeper.rsplit(".", 1)[0]
