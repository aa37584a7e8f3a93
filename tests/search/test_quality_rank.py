"""Keep the best copy, not the biggest: on groups of an original and its worse copies (2x
upscales by bicubic and Lanczos, a re-save at quality 30-50, a Gaussian blur of sigma 1.5-3, an
over-exposed copy, a 90% crop, a half-size copy), `best-quality` keeps the original where
`largest-resolution` keeps an upscale. The groups are given (the encoder's grouping is not the
point); the pixels are decoded in full, as the model decodes any image under twice its input
size (docs/quality.md says what a reduced decode hides)."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image, ImageEnhance, ImageFilter

from tests.conftest import FakeEncoder, sample_photo
from vitsearch.indexer import build_index
from vitsearch.indexer.store.store import Store
from vitsearch.search.dupes import DuplicateGroup
from vitsearch.search.resolve import plan_resolution
from vitsearch.ui.samples import make_scene

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "camera.png", "rocket.jpg",
          "ihc.png", "motorcycle_right.png")


class FullDecode(FakeEncoder):
    draft_size = None  # decode every pixel, as the real model does below twice its input size


def _copies(original: Image.Image, rng: random.Random) -> dict[str, tuple[Image.Image, int]]:
    """name -> (image, JPEG quality) of the original and a few worse copies of it."""
    w, h = original.size
    worse = {
        "up2-bicubic": (original.resize((2 * w, 2 * h), Image.Resampling.BICUBIC), 80),
        "up2-lanczos": (original.resize((2 * w, 2 * h), Image.Resampling.LANCZOS), 90),
        "resaved": (original, rng.randint(30, 50)),
        "blurred": (original.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 3.0))), 92),
        "overexposed": (ImageEnhance.Brightness(original).enhance(rng.uniform(1.8, 2.5)), 92),
        "cropped": (original.crop((w // 20, h // 20, w - w // 20, h - h // 20)), 92),
        "half": (original.resize((w // 2, h // 2), Image.Resampling.LANCZOS), 92),
    }
    chosen = rng.sample(sorted(worse), rng.randint(2, 4))
    if not any(k.startswith("up2") for k in chosen):
        chosen.append(rng.choice(["up2-bicubic", "up2-lanczos"]))  # so that largest-resolution is wrong
    return {"original": (original, 92), **{k: worse[k] for k in chosen}}


def _library(folder, groups: int, rng: random.Random) -> dict[str, str]:
    """Write the groups; returns file name -> its group's name."""
    folder.mkdir(parents=True)
    names = {}
    for n in range(groups):
        if n % 4 == 0:  # a quarter real photos (cropped to vary), the rest generated landscapes
            photo = sample_photo(PHOTOS[(n // 4) % len(PHOTOS)])
            x, y = rng.randint(0, photo.width // 8), rng.randint(0, photo.height // 8)
            original = photo.crop((x, y, x + photo.width * 3 // 4, y + photo.height * 3 // 4))
        else:
            original = make_scene(1000 + n, (rng.choice([320, 360, 400]), rng.choice([240, 270, 300])))
        for kind, (image, quality) in _copies(original, rng).items():
            name = f"g{n:03d}-{kind}.jpg"
            image.save(folder / name, "JPEG", quality=quality)
            names[name] = f"g{n:03d}"
    return names


def _kept(store, names: dict[str, str], rules: list[str]) -> dict[str, str]:
    """group -> the kind of copy the rules keep."""
    rows = Store(store).records("id, path", "true")
    ids = {r["path"].rsplit("/", 1)[1]: r["id"] for r in rows}
    by_group: dict[str, list[int]] = {}
    for name, group in names.items():
        by_group.setdefault(group, []).append(ids[name])
    groups = [DuplicateGroup("near", tuple(sorted(i)), (), (), min(i), False) for i in by_group.values()]
    plan = plan_resolution(Store(store), groups, rules)
    return {p.keeper["path"].rsplit("/", 1)[1].split("-", 1)[0]: p.keeper["path"].rsplit("-", 1)[-1][:-4]
            if "-" in p.keeper["path"] else "" for p in plan}


def _rates(tmp_path, groups: int) -> dict:
    rng = random.Random(31)
    names = _library(tmp_path / "photos", groups, rng)
    build_index([tmp_path / "photos"], tmp_path / "store", encoder=FullDecode())
    quality = _kept(tmp_path / "store", names, ["best-quality", "oldest-file"])
    largest = _kept(tmp_path / "store", names, ["largest-resolution", "oldest-file"])
    real = [g for g in quality if int(g[1:]) % 4 == 0]  # the groups made from photographs
    return {"groups": groups, "best_quality_keeps_original": sum(k == "original" for k in quality.values()) / groups,
            "on_photos": sum(quality[g] == "original" for g in real) / len(real),
            "largest_keeps_upscale": sum(k in ("bicubic", "lanczos") for k in largest.values()) / groups,
            "wrong": {g: k for g, k in quality.items() if k != "original"}}


def test_on_two_hundred_groups_best_quality_keeps_the_original(tmp_path):
    figures = _rates(tmp_path, 200)
    print(figures)
    assert figures["largest_keeps_upscale"] == 1.0, "every group has an upscale, which largest-resolution keeps"
    assert figures["best_quality_keeps_original"] >= 0.95 and figures["on_photos"] >= 0.95, figures["wrong"]


def test_an_upscale_is_flagged_and_the_reason_says_why(tmp_path, capsys):
    from vitsearch.ui.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    photo = sample_photo("chelsea.png")
    photo.save(photos / "original.jpg", quality=92)
    photo.resize((photo.width * 2, photo.height * 2), Image.Resampling.BICUBIC).save(photos / "export.jpg", quality=80)
    store = str(tmp_path / "store")
    build_index([photos], store, encoder=FullDecode())
    assert main(["dupes", "--store", store, "--json"]) == 0
    (group,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    flags = {m["path"].rsplit("/", 1)[1]: m["suspected_upscale"] for m in group["members"]}
    assert flags == {"original.jpg": False, "export.jpg": True}
    assert group["keeper"] == next(m["id"] for m in group["members"] if m["path"].endswith("/original.jpg"))
    assert main(["dupes", "--store", store, "--resolve", "best-quality", "--json"]) == 0
    (plan,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "more detail than the larger copy, which is upscaled" in plan["reason"]


def test_copies_too_alike_are_left_out_by_min_difference(tmp_path, capsys):
    """--min-difference 1.5: a re-save at nearly the same size is left out (and counted), a copy
    twice as large in pixels is still resolved."""
    from vitsearch.ui.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    photo = sample_photo("chelsea.png")
    photo.save(photos / "alike.jpg", quality=92)
    photo.save(photos / "alike-copy.jpg", quality=90)
    other = sample_photo("coffee.png")
    other.save(photos / "coffee.jpg", quality=92)
    other.resize((other.width // 2, other.height // 2), Image.Resampling.LANCZOS).save(photos / "coffee-small.jpg")
    store = str(tmp_path / "store")
    build_index([photos], store, encoder=FakeEncoder())
    assert main(["dupes", "--store", store, "--resolve", "best-quality", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["dupes", "--store", store, "--resolve", "best-quality", "--min-difference", "1.5", "--json"]) == 0
    out = capsys.readouterr()
    moved = [m["path"].rsplit("/", 1)[1] for line in out.out.splitlines() for m in json.loads(line)["move"]]
    assert moved == ["coffee-small.jpg"] and "left out: 1 group" in out.err
    with pytest.raises(SystemExit) as refused:
        main(["dupes", "--store", store, "--resolve", "best-quality", "--min-difference", "0.5"])
    assert refused.value.code == 2
