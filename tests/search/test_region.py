"""A region of a picture as the query: `--box` equals searching that crop saved as a lossless PNG,
in upright pixels (EXIF orientation applied first), through the API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from tests.conftest import run_cli, write_photos, write_scenes
from vitsearch.indexer import build_index
from vitsearch.indexer.errors import ConfigError
from vitsearch.search import ImageIndex

BOX = (40, 30, 260, 200)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, random_encoder):
    root = tmp_path_factory.mktemp("region")
    folder = root / "photos"
    write_scenes(folder, range(8))
    write_photos(folder, ("chelsea.png", "coffee.png", "astronaut.png"))
    query = root / "query.jpg"  # stored on its side, with EXIF saying how to turn it upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(folder / "chelsea.jpg").transpose(Image.Transpose.ROTATE_90).save(query, quality=95, exif=exif)
    build_index([folder], root / "store", encoder=random_encoder)
    return root, query


def test_a_box_equals_the_same_crop_saved_losslessly(indexed, random_encoder):
    root, query = indexed
    index = ImageIndex.open(root / "store", encoder=random_encoder)
    crop = root / "crop.png"
    ImageOps.exif_transpose(Image.open(query)).convert("RGB").crop(BOX).save(crop)
    by_box = index.search(str(query), k=10, box=BOX)
    by_file = index.search(str(crop), k=10)
    assert [h.id for h in by_box] == [h.id for h in by_file]
    assert all(abs(a.score - b.score) <= 0.001 for a, b in zip(by_box, by_file, strict=True))
    whole = index.search(str(query), k=10)
    assert [h.score for h in whole] != [h.score for h in by_box], "the box changes the query"


def test_the_cli_box_matches_the_api_and_refuses_boxes_outside(indexed, random_encoder):
    root, query = indexed
    result = run_cli("search", query, "--store", root / "store", "--box", ",".join(map(str, BOX)), "--json")
    assert result.returncode == 0, result.stderr
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    expected = ImageIndex.open(root / "store", encoder=random_encoder).search(str(query), k=10, box=BOX)
    assert [h["id"] for h in hits] == [h.id for h in expected]
    outside = run_cli("search", query, "--store", root / "store", "--box", "0,0,5000,10")
    assert outside.returncode != 0 and "not inside" in outside.stderr
    with pytest.raises(ConfigError, match="X0,Y0,X1,Y1"):
        from vitsearch.search.region import parse_box

        parse_box("1,2,3")


def test_more_like_these_less_like_that(indexed, random_encoder):
    from vitsearch.search.index import combine_queries

    root, _ = indexed
    index = ImageIndex.open(root / "store", encoder=random_encoder)
    ids = {Path(r["path"]).stem: r["id"] for r in index.store.records("id, path")}
    together = index.search_combined([ids["scene-001"], ids["scene-002"]], k=3)
    assert {h.id for h in together[:2]} == {ids["scene-001"], ids["scene-002"]}
    vectors = index.embed_many([ids["scene-001"], ids["coffee"]])
    pushed = combine_queries(vectors[:1], vectors[1:])
    assert float(pushed @ vectors[1]) < float(vectors[0] @ vectors[1]), "the negative pulls the query away"
    plain = index.search(ids["scene-001"], k=12)
    away = index.search_combined([ids["scene-001"]], [ids["coffee"]], k=12)
    rank = lambda hits: [h.id for h in hits].index(ids["coffee"])  # noqa: E731
    assert rank(away) > rank(plain), "less like that: the negative drops down the list"
    cli = run_cli("search", root / "photos" / "scene-001.jpg", "--store", root / "store", "--not",
                  root / "photos" / "coffee.jpg", "-k", "12", "--json")
    assert cli.returncode == 0, cli.stderr
    assert [json.loads(line)["id"] for line in cli.stdout.splitlines()] == [h.id for h in away]
    spelled = index.search([ids["scene-001"]], k=12, negative=[ids["coffee"]])  # the spelling
    assert [h.id for h in spelled] == [h.id for h in away]
    assert [h.id for h in index.search([ids["scene-001"], ids["scene-002"]], k=3)] == [h.id for h in together]
    with pytest.raises(ConfigError, match="cancel out"):
        combine_queries(vectors[:1], vectors[:1] * 2)


def test_collapse_folds_near_duplicates_into_the_higher_hit(tmp_path, random_encoder):
    import shutil

    folder = tmp_path / "photos"
    write_scenes(folder, range(6))
    for n in range(3):
        shutil.copy(folder / "scene-002.jpg", folder / f"copy-{n}.jpg")
    store = tmp_path / "store"
    build_index([folder], store, encoder=random_encoder)
    index = ImageIndex.open(store, encoder=random_encoder)
    plain = index.search(str(folder / "scene-002.jpg"), k=5)
    assert sum(Path(h.path).name.startswith(("copy-", "scene-002")) for h in plain) == 4
    folded = index.search(str(folder / "scene-002.jpg"), k=5, collapse=True)
    assert len(folded) == 5 and len(folded[0].copies) == 3, "the three copies fold into the top hit"
    assert not any(Path(h.path).name.startswith("copy-") for h in folded[1:])
    cli = run_cli("search", folder / "scene-002.jpg", "--store", store, "--collapse", "-k", "5")
    assert cli.returncode == 0 and "(+3 copies)" in cli.stdout.splitlines()[0] and len(cli.stdout.splitlines()) == 5
