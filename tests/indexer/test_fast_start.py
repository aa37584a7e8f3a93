"""A fast start: after the first CPU run with given weights, the model is built from the cache
(indexer.model.model_cache) as indexer.model.vit.ViT with indexer.model.transform.EvalTransform, without importing
timm or torchvision, and embeds exactly as timm's model and transform do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO, run_cli, write_photos
from vitsearch.indexer.model.encoder import load_encoder
from vitsearch.indexer.model.transform import EvalTransform
from vitsearch.indexer.model.vit import ViT
from vitsearch.indexer.model.weights import MODEL_NAME, build_model

PROBE = """
import json, sys
import numpy as np
from PIL import Image
from vitsearch.indexer.model.encoder import load_encoder
encoder = load_encoder(sys.argv[1], device="cpu", exact=True)
image = Image.open(sys.argv[2]).convert("RGB")
vector = encoder.encode(encoder.preprocess(image).unsqueeze(0))[0]
print(json.dumps({"timm": "timm" in sys.modules, "torchvision": "torchvision" in sys.modules,
                  "model": type(encoder.model).__name__, "fingerprint": encoder.weights.fingerprint,
                  "vector": vector.tolist(), "labels": encoder.label_head is not None}))
"""


def probe(cache: Path, weights: str, image: Path) -> dict:
    env = dict(os.environ, VITSEARCH_CACHE=str(cache))
    result = subprocess.run([sys.executable, "-c", PROBE, weights, str(image)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photo"), ["chelsea.png"])[0]


def test_the_transform_equals_timms_bit_for_bit(photo):
    import timm.data

    model, _ = build_model("random")
    config = timm.data.resolve_model_data_config(model)
    theirs, ours = timm.data.create_transform(**config, is_training=False), EvalTransform(config)
    rng = np.random.default_rng(0)
    sizes = [(269, 269), (270, 269), (300, 200), (200, 300), (4000, 3000), (257, 1000), (1001, 999)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    images.append(Image.open(photo).convert("RGB"))
    for image in images:
        assert torch.equal(theirs(image), ours(image)), image.size


def test_the_model_equals_timms_on_the_same_weights():
    from tests.search.test_labels import full_model_with_head

    for timm_model in (build_model("random")[0], full_model_with_head()):
        ours = ViT.for_model(MODEL_NAME)
        ours.load_state_dict({k: v for k, v in timm_model.state_dict().items() if not k.startswith("head.")},
                             strict=True, assign=True)
        batch = torch.randn(3, 3, 256, 256)
        with torch.inference_mode():
            theirs_features, ours_features = timm_model.forward_features(batch), ours.forward_features(batch)
            assert torch.allclose(theirs_features, ours_features, atol=1e-6, rtol=0)
            assert torch.allclose(timm_model.forward_head(theirs_features, pre_logits=True),
                                  ours.forward_head(ours_features), atol=1e-6, rtol=0)


@pytest.mark.e2e  # the real CLI or model in child processes
def test_a_second_start_skips_timm_and_embeds_the_same(tmp_path, photo):
    cache = tmp_path / "cache"
    first = probe(cache, "random", photo)
    assert first["timm"] and first["model"] == "VisionTransformer"
    second = probe(cache, "random", photo)
    assert not second["timm"] and not second["torchvision"] and second["model"] == "ViT"
    assert second["fingerprint"] == first["fingerprint"], "stores built either way stay compatible"
    assert np.allclose(first["vector"], second["vector"], atol=1e-6) and second["labels"]
    # A damaged cache is a cache miss: timm builds the model again and the cache is rewritten.
    state = next(cache.glob("models/*/model.safetensors"))
    state.write_bytes(state.read_bytes()[:1000])
    third = probe(cache, "random", photo)
    assert third["timm"] and np.allclose(third["vector"], first["vector"], atol=1e-6)
    assert not probe(cache, "random", photo)["timm"]


def test_a_weights_file_is_cached_with_its_head(tmp_path):
    from safetensors.torch import save_file

    from tests.search.test_labels import full_model_with_head

    model = full_model_with_head()
    weights = tmp_path / "with-head.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    built = load_encoder(str(weights), device="cpu")
    cached = load_encoder(str(weights), device="cpu")
    assert type(built.model).__name__ == "VisionTransformer" and type(cached.model).__name__ == "ViT"
    assert cached.weights == built.weights
    assert np.array_equal(cached.label_head.weight, built.label_head.weight)
    assert cached.label_head.names == built.label_head.names and not cached.label_head.random
    os.utime(weights, ns=(0, 0))  # the file changed (as far as its stat says): not the cached one
    assert type(load_encoder(str(weights), device="cpu").model).__name__ == "VisionTransformer"


SYNC = """
import json, sys
from vitsearch.ui.cli import main
main(["index", sys.argv[1], "--store", sys.argv[2], "--weights", "random", "--json"])
print(json.dumps({"torch": "torch" in sys.modules}))
"""


@pytest.mark.e2e  # the real CLI or model in child processes
def test_a_sync_with_nothing_to_embed_does_without_the_model(tmp_path):
    """Nothing new or changed (a removal at most): the run never imports torch, and the store
    stays whole. A new file brings the model back."""
    folder = tmp_path / "photos"
    write_photos(folder, ["chelsea.png", "coffee.png", "astronaut.png"])

    def sync() -> tuple[dict, bool]:
        result = subprocess.run([sys.executable, "-c", SYNC, str(folder), str(tmp_path / "store")], cwd=REPO,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        summary, imported = (json.loads(line) for line in result.stdout.splitlines()[-2:])
        return summary, imported["torch"]

    first, loaded = sync()
    assert first["added"] == 3 and loaded
    again, loaded = sync()
    assert again["unchanged"] == 3 and again["added"] == 0 and not loaded
    (folder / "coffee.jpg").unlink()
    removed, loaded = sync()
    assert removed["removed"] == 1 and not loaded
    from vitsearch.search import ImageIndex

    info = ImageIndex.open(tmp_path / "store").info()
    assert info["images"] == info["vectors"] == 2
    refused = run_cli("index", folder, "--store", tmp_path / "store", "--weights", "random", "--exact",
                      "--precision", "int8")
    assert refused.returncode == 2 and "--exact is fp32" in refused.stderr, "bad options are said even then"
    from vitsearch.indexer.store.store import Store

    with Store(tmp_path / "store", read_only=False).connect() as con:  # a row still to be labelled
        con.execute("UPDATE images SET labels = NULL WHERE id = (SELECT min(id) FROM images)")
    _, loaded = sync()
    with Store(tmp_path / "store").connect() as con:
        unlabelled = con.execute("SELECT count(*) FROM images WHERE labels IS NULL").fetchone()[0]
    assert loaded and unlabelled == 0, "a row waiting for its labels brings the model back"
    write_photos(folder, ["rocket.jpg"])
    added, loaded = sync()
    assert added["added"] == 1 and loaded


def test_the_first_files_decode_while_the_model_loads_and_embed_the_same(tmp_path, monkeypatch):
    """New files of a run are decoded on threads while the model loads (indexer.prefetch), at the
    draft size the store recorded; the run then does not decode them again, and its store equals
    one made without the early decodes."""
    from vitsearch.indexer import build_index, ingest, prefetch
    from vitsearch.indexer.store.store import Store

    first, later = write_photos(tmp_path / "photos", ["chelsea.png", "coffee.png"]), ["astronaut.png", "rocket.jpg"]
    early, by_run = [], []

    def spy(calls, load):
        return lambda data, **kw: calls.append(len(data)) or load(data, **kw)

    monkeypatch.setattr(prefetch, "load_image", spy(early, prefetch.load_image))
    monkeypatch.setattr(ingest, "load_image", spy(by_run, ingest.load_image))
    stores = {}
    for name, files in (("prefetched", prefetch.PREFETCH_FILES), ("plain", 0)):
        monkeypatch.setattr(prefetch, "PREFETCH_FILES", files)
        folder = tmp_path / name
        folder.mkdir()
        for path in first:
            os.link(path, folder / path.name)
        store = tmp_path / f"{name}-store"
        build_index([folder], store, weights="random", precision="fp32")
        write_photos(folder, later)  # new files: decoded early at the draft size the store recorded
        early.clear()
        by_run.clear()
        report = build_index([folder], store, weights="random", precision="fp32")
        assert report.added == 2
        stores[name] = (len(early), len(by_run))
        with Store(store).connect() as con:
            rows = con.execute("SELECT regexp_extract(path, '[^/]+$') AS name, embedding, pixel_hash "
                               "FROM images ORDER BY name").fetchall()
        stores[name] += (rows,)
    assert stores["prefetched"][:2] == (2, 0), "both new files decoded early, none again by the run"
    assert stores["plain"][:2] == (0, 2)
    assert stores["prefetched"][2] == stores["plain"][2], "the same embeddings and signatures either way"
