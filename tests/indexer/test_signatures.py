"""Duplicate signatures: pixel hashes, orientation hashes under the eight transforms, and the
backfill that signs an older store without running the model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FakeEncoder, scene_bytes, write_scenes
from vitsearch.indexer import build_index
from vitsearch.indexer.images import load_image
from vitsearch.indexer.signatures import (
    TRANSFORMS,
    apply_transform,
    hamming,
    inverse_transform,
    orientation_hash,
    transformed_hashes,
)
from vitsearch.indexer.store import Store


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
