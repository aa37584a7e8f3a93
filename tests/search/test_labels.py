"""Labels from the model's own head: with a weights file that carries an ImageNet-1k classifier,
each image's stored top-5 equals timm's full model (`model(x)` with its classifier, on the model
card's preprocessing), `search --label` lists exactly the images holding a class, and stores
indexed before labels existed get them without the model seeing an image again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.conftest import run_cli, write_photos, write_scenes
from vitsearch.indexer import build_index
from vitsearch.indexer.errors import ConfigError
from vitsearch.indexer.model.encoder import load_encoder
from vitsearch.indexer.model.weights import MODEL_NAME, _content_sensitive_init
from vitsearch.indexer.store.store import Store
from vitsearch.search import ImageIndex


def full_model_with_head(seed: int = 7):
    """timm's whole model, classifier included, with content-sensitive random weights and a final
    LayerNorm whose scale and shift are not the identity (so recovering the pre-logits is tested)."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(MODEL_NAME, pretrained=False)
    _content_sensitive_init(model)
    with torch.no_grad():
        model.fc_norm.weight.uniform_(0.5, 1.5)
        model.fc_norm.bias.normal_(0.0, 0.2)
        model.head.bias.normal_(0.0, 0.5)
    return model.eval()


def reference_top5(model, path: Path) -> tuple[list[int], list[float]]:
    """The model card: timm's eval transform on the upright RGB image, then model(x), softmax."""
    import timm.data
    import torch

    config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**config, is_training=False)
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    with torch.inference_mode():
        probs = model(transform(image).unsqueeze(0)).softmax(-1)[0].double()
    top = torch.topk(probs, 5)
    return top.indices.tolist(), top.values.tolist()


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    import timm.data
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("labels")
    folder = root / "photos"
    write_scenes(folder, range(6))
    write_photos(folder, ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "horse.png", "camera.png"))
    model = full_model_with_head()
    weights = root / "with-head.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    encoder = load_encoder(str(weights), device="cpu", exact=True)
    report = build_index([folder], root / "store", encoder=encoder)
    names = timm.data.ImageNetInfo()
    expected = {}
    for path in sorted(folder.iterdir()):
        ids, probs = reference_top5(model, path)
        expected[str(path)] = ([names.index_to_description(i) for i in ids], probs)
    return root, encoder, report, expected


def stored_labels(store: Path) -> dict[str, tuple[list[str], list[float]]]:
    with Store(store).connect() as con:
        rows = con.execute("SELECT path, labels, label_probs FROM images WHERE status = 'ok'").fetchall()
    return {p: (list(labels), list(probs)) for p, labels, probs in rows}


def test_stored_top5_equals_timms_full_model(labelled):
    root, encoder, report, expected = labelled
    assert encoder.label_head is not None and not encoder.label_head.random
    assert report.labelled == len(expected) == 12
    stored = stored_labels(root / "store")
    assert stored.keys() == expected.keys()
    for path, (names, probs) in expected.items():
        assert stored[path][0] == names, path
        assert np.allclose(stored[path][1], probs, atol=1e-4), path
    info = json.loads(run_cli("info", "--store", root / "store", "--json").stdout)
    assert info["labelled"] == 12 and info["labels"] == "the weights' ImageNet-1k head"


def test_label_search_lists_exactly_the_images_holding_the_class(labelled):
    root, _, _, expected = labelled
    holders: dict[str, list[tuple[float, str]]] = {}
    for path, (names, probs) in expected.items():
        for name, prob in zip(names, probs, strict=True):
            holders.setdefault(name, []).append((prob, path))
    description, held = max(holders.items(), key=lambda item: (len(item[1]), item[0]))
    assert len(held) >= 2, "the test needs a class that several images hold"
    synonym = description.split(",")[-1].strip().upper()  # any synonym, any case
    result = run_cli("search", "--label", synonym, "--store", root / "store", "--json")
    assert result.returncode == 0, result.stderr
    hits = [json.loads(line) for line in result.stdout.splitlines()]
    assert [h["path"] for h in hits] == [p for _, p in sorted(held, reverse=True)]
    assert all(description in h["labels"] for h in hits)
    assert all(abs(h["score"] - prob) < 1e-4 for h, (prob, _) in zip(hits, sorted(held, reverse=True), strict=True))
    index = ImageIndex.open(root / "store")
    assert [h.path for h in index.search_label(description, k=1)] == [hits[0]["path"]]
    where = f"list_contains(labels, '{description}')"
    assert {h.path for h in index.search(hits[0]["path"], k=20, where=where)} == {h["path"] for h in hits}
    assert {h.path for h in index.search(hits[0]["path"], k=20, label=synonym)} == {h["path"] for h in hits}


def test_a_near_miss_is_refused_with_suggestions(labelled):
    root = labelled[0]
    with pytest.raises(ConfigError, match="did you mean: 'tabby cat'"):
        ImageIndex.open(root / "store").search_label("tabi cat")
    result = run_cli("search", "--label", "tabby kat", "--store", root / "store")
    assert result.returncode != 0 and "tabby cat" in result.stderr


def test_export_carries_labels_and_probabilities(labelled, tmp_path):
    import pyarrow.parquet as pq

    root, _, _, expected = labelled
    assert run_cli("export", tmp_path / "out.parquet", "--store", root / "store").returncode == 0
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    for row in table:
        assert row["labels"] == expected[row["path"]][0]
        assert np.allclose(row["label_probs"], expected[row["path"]][1], atol=1e-4)


def test_a_store_from_before_labels_gets_them_without_the_model(labelled, tmp_path):
    import shutil

    root, encoder, _, _ = labelled
    old = tmp_path / "old-store"
    shutil.copytree(root / "store", old)
    with Store(old, read_only=False).connect() as con:  # as a store written before labels existed
        con.execute("ALTER TABLE images DROP COLUMN labels")
        con.execute("ALTER TABLE images DROP COLUMN label_probs")
        con.execute("DROP TABLE label_classes")
        con.execute("DELETE FROM manifest WHERE key LIKE 'label_head%'")
    report = build_index([root / "photos"], old, encoder=encoder)
    assert report.embedded == 0 and report.labelled == 12, "labels come from the stored embeddings"
    assert stored_labels(old) == stored_labels(root / "store")
