"""Duplicate signatures: pixel hashes, orientation hashes under the eight transforms, and the
backfill that signs an older store without running the model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FakeEncoder, scene_bytes, write_scenes
from vitsearch.indexer import build_index
from vitsearch.indexer.imaging.images import load_image
from vitsearch.indexer.imaging.signatures import (
    TRANSFORMS,
    apply_transform,
    hamming,
    inverse_transform,
    orientation_hash,
    transformed_hashes,
)
from vitsearch.indexer.store.store import Store


def _image(seed: int) -> Image.Image:
    return Image.open(io.BytesIO(scene_bytes(seed))).convert("RGB")


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_bit_operations_predict_the_hash_of_each_transformed_image(name):
    for seed in range(4):
        image = _image(seed)
        original = np.array([orientation_hash(image)])
        moved = np.array([orientation_hash(apply_transform(image, name))])
        assert hamming(transformed_hashes(original, name), moved)[0] <= 2  # box-filter rounding only
        assert hamming(transformed_hashes(moved, inverse_transform(name)), original)[0] <= 2
        assert hamming(original, moved)[0] > 10  # the transform really changes the hash


def test_unrelated_images_are_far_apart_and_flat_ones_have_no_hash():
    hashes = np.array([orientation_hash(_image(seed)) for seed in range(12)])
    distances = [hamming(hashes[i:i + 1], hashes[j:j + 1])[0] for i in range(12) for j in range(i + 1, 12)]
    assert min(distances) > 8
    assert orientation_hash(Image.new("RGB", (300, 200), (120, 30, 200))) is None


def test_pixel_hash_ignores_metadata_but_not_pixels():
    image = _image(5)
    plain, tagged, reencoded = io.BytesIO(), io.BytesIO(), io.BytesIO()
    image.save(plain, "PNG")
    exif = Image.Exif()
    exif[0x0110] = "Another Camera"
    image.save(tagged, "PNG", exif=exif)
    image.save(reencoded, "JPEG", quality=90)
    hashes = [load_image(b.getvalue(), draft_size=64, signature=True).signature.pixel_hash
              for b in (plain, tagged, reencoded)]
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]
    assert load_image(plain.getvalue()).signature is None  # only indexing pays for it


def test_index_signs_new_rows_and_backfills_old_ones_without_the_model(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(photos, range(5))
    encoder = FakeEncoder()
    build_index([photos], store, encoder=encoder)
    with Store(store).connect() as con:
        signed = con.execute("SELECT id, pixel_hash, orientation_hash FROM images ORDER BY id").fetchall()
    assert all(pixel for _, pixel, _ in signed) and all(h is not None for *_, h in signed)

    with Store(store, read_only=False).connect() as con:  # a store from before signatures
        con.execute("UPDATE images SET pixel_hash = NULL, orientation_hash = NULL")
    calls = encoder.calls
    report = build_index([photos], store, encoder=encoder)
    assert report.signed == 5 and encoder.calls == calls
    with Store(store).connect() as con:
        assert con.execute("SELECT id, pixel_hash, orientation_hash FROM images ORDER BY id").fetchall() == signed
    assert build_index([photos], store, encoder=encoder).signed == 0


def test_pngs_signed_by_an_older_decode_are_signed_again_once(tmp_path):
    """A store signed before large RGB PNGs were shrunk while decoding: those rows, and only
    those, get their signatures made again as new rows get them, so that a PNG differing from
    an older one only in metadata still has its pixel hash; the store then records the version."""
    from vitsearch.indexer.backfill import SIGNATURE_VERSION
    from vitsearch.indexer.imaging.signatures import pixel_hash

    photos, store = tmp_path / "photos", tmp_path / "store"
    photos.mkdir()
    large = _image(1).resize((300, 200))  # twice FakeEncoder's draft size of 64: shrunk
    large.save(photos / "large.png")
    _image(2).resize((100, 90)).save(photos / "small.png")  # under twice the draft size: decoded in full
    write_scenes(photos, range(3, 5))
    encoder = FakeEncoder()
    build_index([photos], store, encoder=encoder)
    with Store(store).connect() as con:
        new = dict(con.execute("SELECT regexp_extract(path, '[^/]+$'), pixel_hash FROM images").fetchall())
    assert Store(store).manifest()["signature_version"] == SIGNATURE_VERSION
    assert new["large.png"] == load_image((photos / "large.png").read_bytes(), draft_size=64,
                                          signature=True).signature.pixel_hash
    assert new["large.png"] != pixel_hash(Image.open(photos / "large.png")), "its shrunk pixels are hashed"

    with Store(store, read_only=False).connect() as con:  # as version 1 left it: the full PNG hashed
        con.execute("DELETE FROM manifest WHERE key = 'signature_version'")
        con.execute("UPDATE images SET pixel_hash = ? WHERE path LIKE '%large.png'",
                    [pixel_hash(Image.open(photos / "large.png"))])
        con.execute("UPDATE images SET pixel_hash = 'untouched' WHERE path NOT LIKE '%large.png'")
    calls = encoder.calls
    report = build_index([photos], store, encoder=encoder)
    assert report.signed == 1 and encoder.calls == calls, "a decode, no model pass"
    with Store(store).connect() as con:
        now = dict(con.execute("SELECT regexp_extract(path, '[^/]+$'), pixel_hash FROM images").fetchall())
    assert now["large.png"] == new["large.png"]
    assert {name for name, value in now.items() if value == "untouched"} == set(now) - {"large.png"}
    assert Store(store).manifest()["signature_version"] == SIGNATURE_VERSION
    assert build_index([photos], store, encoder=encoder).signed == 0, "once"
