"""The precision ladder: the fastest precision the CPU runs natively, kept only if the first batch
reaches cosine 0.999 to fp32 on every image, else the next; recorded in the store. The CPU's
flags are forced here, so the no-bf16 (int8) branch and the fallback run on any machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FakeEncoder, run_cli, write_photos, write_scenes
from vitsearch.indexer import build_index
from vitsearch.indexer.errors import ConfigError
from vitsearch.indexer.model import cpu_features, encoder, precision
from vitsearch.indexer.model.encoder import encoder_identity
from vitsearch.indexer.store.store import Store
from vitsearch.search import ImageIndex


def cpu_with(monkeypatch, *flags: str) -> None:
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: set(flags))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("precision") / "photos"
    write_scenes(folder, range(5))
    write_photos(folder, ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"))
    return folder


def embeddings(store: Path) -> dict[str, np.ndarray]:
    with Store(store).connect() as con:
        rows = con.execute("SELECT path, embedding FROM images WHERE status = 'ok'").fetchall()
    return {p: np.asarray(v, np.float32) for p, v in rows}


def test_the_ladder_follows_the_cpu(monkeypatch):
    cpu_with(monkeypatch)
    assert precision.precision_ladder("cpu", False) == ("fp32",)
    cpu_with(monkeypatch, "avx512_vnni")
    assert precision.precision_ladder("cpu", False) == ("int8", "fp32")
    cpu_with(monkeypatch, "avx512_bf16", "avx512_vnni")
    assert precision.precision_ladder("cpu", False) == ("bf16", "int8", "fp32")
    assert precision.precision_ladder("cpu", True) == ("fp32",), "--exact is fp32"
    assert precision.precision_ladder("cuda", False) == ("fp16",)
    assert precision.precision_ladder("cpu", False, "int8") == ("int8", "fp32")
    with pytest.raises(ConfigError, match="exact is fp32"):
        precision.precision_ladder("cpu", True, "int8")
    with pytest.raises(ConfigError, match="precision='fp8' is not one of auto, bf16, int8, fp32"):
        precision.precision_ladder("cpu", False, "fp8")


def test_without_bf16_int8_is_chosen_checked_and_recorded(monkeypatch, photos, tmp_path):
    cpu_with(monkeypatch, "avx512_vnni")  # a laptop without bf16: the int8 branch
    int8 = encoder.load_encoder("random", device="cpu")
    assert int8.precision == "int8"
    batches = []
    launch = int8.launch
    int8.launch = lambda batch: batches.append(len(batch)) or launch(batch)
    report = build_index([photos], tmp_path / "int8", encoder=int8)
    assert report.precision == "int8" and report.precision_check.min_cosine >= 0.999
    # The first batch is the check's images alone (the model starts sooner); then full batches.
    assert batches == [precision.PARITY_IMAGES, 9 - precision.PARITY_IMAGES]
    assert report.precision_check.images == precision.PARITY_IMAGES
    fp32 = encoder.load_encoder("random", device="cpu", precision="fp32")
    fp32_batches = []
    fp32_launch = fp32.launch
    fp32.launch = lambda batch: fp32_batches.append(len(batch)) or fp32_launch(batch)
    build_index([photos], tmp_path / "fp32", encoder=fp32)
    # Nothing to check, and still a small first batch: the first files commit (and show) sooner.
    assert fp32_batches == batches
    ours, reference = embeddings(tmp_path / "int8"), embeddings(tmp_path / "fp32")
    assert ours.keys() == reference.keys() and len(ours) == 9
    cosines = [float(ours[p] @ reference[p]) for p in ours]
    assert min(cosines) >= 0.999, cosines
    assert max(cosines) < 0.999999, "the int8 model really ran (not fp32 under another name)"
    info = json.loads(run_cli("info", "--store", tmp_path / "int8", "--json").stdout)
    assert info["precision"] == "int8" and info["precision_min_cosine"] >= 0.999
    # A later run into the same store (same weights, torch and CPU) keeps the outcome: no fp32 pass.
    write_scenes(photos.parent / "more", range(40, 43))
    again = encoder.load_encoder("random", device="cpu")
    later = build_index([photos, photos.parent / "more"], tmp_path / "int8", encoder=again)
    assert later.embedded == 3 and again.precision == "int8" and again.precision_check.reused
    assert later.precision_check is None, "nothing was checked again"
    # A search query runs at that precision too, without an fp32 pass (a copy of an indexed photo:
    # a path the store does not know, so the model runs).
    shutil.copy(photos / "coffee.jpg", tmp_path / "query.jpg")
    index = ImageIndex.open(tmp_path / "int8")
    passes = []
    pooled = index.encoder._pooled
    index.encoder._pooled = lambda batch, precision: passes.append(precision) or pooled(batch, precision)
    query = index.embed(tmp_path / "query.jpg")
    assert passes == ["int8"] and index.encoder.precision_check.reused
    assert float(query @ ours[str(photos / "coffee.jpg")]) >= 0.999


def test_a_run_too_small_to_check_runs_exact_in_one_pass_and_the_next_one_checks(monkeypatch, photos, tmp_path):
    cpu_with(monkeypatch, "avx512_vnni")
    few = tmp_path / "few"
    few.mkdir()
    for name in ("coffee.jpg", "rocket.jpg", "scene-001.jpg"):
        shutil.copy(photos / name, few / name)
    chosen = encoder.load_encoder("random", device="cpu")
    passes = []
    pooled = chosen._pooled
    chosen._pooled = lambda batch, precision: passes.append((precision, len(batch))) or pooled(batch, precision)
    report = build_index([few], tmp_path / "store", encoder=chosen)
    assert passes == [("fp32", 3)], "fewer images than the check needs: fp32 alone, one pass"
    assert report.precision == "fp32" and report.precision_check is None
    manifest = Store(tmp_path / "store").manifest()
    assert manifest["precision"] == "fp32" and "precision_check_key" not in manifest, "nothing checked, nothing kept"
    exact = encoder.load_encoder("random", device="cpu", precision="fp32")
    build_index([few], tmp_path / "exact", encoder=exact)
    ours, reference = embeddings(tmp_path / "store"), embeddings(tmp_path / "exact")
    assert all(np.array_equal(ours[p], reference[p]) for p in ours), "the fp32 vectors themselves"

    write_scenes(tmp_path / "more", range(50, 50 + precision.PARITY_IMAGES))
    later = encoder.load_encoder("random", device="cpu")
    again = build_index([few, tmp_path / "more"], tmp_path / "store", encoder=later)
    assert again.precision == "int8" and again.precision_check.images == precision.PARITY_IMAGES
    assert Store(tmp_path / "store").manifest()["precision_check_key"] == later.precision_key()


def test_a_precision_that_fails_its_check_falls_back_and_says_so(monkeypatch, photos, tmp_path):
    cpu_with(monkeypatch, "avx512_bf16", "avx512_vnni")
    monkeypatch.setattr(precision, "PARITY_COSINE", 1.5)  # nothing but fp32 itself can pass
    chosen = encoder.load_encoder("random", device="cpu")
    report = build_index([photos], tmp_path / "store", encoder=chosen)
    assert report.precision == "fp32"
    assert [t.precision for t in report.precision_check.tried] == ["bf16", "int8", "fp32"]
    manifest = Store(tmp_path / "store").manifest()
    assert manifest["precision"] == "fp32" and manifest["precision_tried"][0]["precision"] == "bf16"


def test_the_cli_takes_a_precision(photos, tmp_path):
    result = run_cli("index", photos, "--store", tmp_path / "store", "--weights", "random", "--precision", "int8")
    assert result.returncode == 0, result.stderr
    assert Store(tmp_path / "store").manifest()["precision"] == "int8"
    refused = run_cli("index", photos, "--store", tmp_path / "other", "--weights", "random", "--exact",
                      "--precision", "int8")
    assert refused.returncode == 2 and "--exact is fp32" in refused.stderr


CHECK_AS_RECORDED = {  # the manifest entries a check wrote before PrecisionCheck existed (other tools read them)
    "precision": "int8", "precision_min_cosine": 0.999512, "precision_checked_images": 8,
    "precision_tried": [{"precision": "bf16", "min_cosine": 0.99812}, {"precision": "int8", "min_cosine": 0.999512}],
    "precision_check_key": "bf16|int8|fp32|fingerprint-fake|2.5.0|avx512_bf16",
}


class CheckedFake(FakeEncoder):
    """A fake with a ladder to check: the key is fixed, so a recorded check can match it."""

    def precision_key(self) -> str | None:
        return CHECK_AS_RECORDED["precision_check_key"]


def test_a_check_round_trips_through_the_manifest_under_its_old_entries(tmp_path):
    check = precision.PrecisionCheck("int8", 0.999512, 8, (precision.Tried("bf16", 0.99812),
                                                          precision.Tried("int8", 0.999512)),
                                     key=CHECK_AS_RECORDED["precision_check_key"])
    store = Store(tmp_path / "store", read_only=False)
    store.initialize(encoder_identity(FakeEncoder()))
    precision.record_precision(store, "int8", check=check, graph="eager")
    manifest = store.manifest()
    assert {k: manifest[k] for k in CHECK_AS_RECORDED} == CHECK_AS_RECORDED, "the same entries, the same values"
    assert manifest["model_graph"] == "eager"
    assert precision.PrecisionCheck.from_manifest(manifest) == check
    assert check.fell_back and (check.precision, check.min_cosine, check.images) == ("int8", 0.999512, 8)


def test_a_check_recorded_before_is_reused():
    assert precision.PrecisionCheck.from_manifest({"precision": "fp32"}) is None, "nothing was checked"
    older = {k: v for k, v in CHECK_AS_RECORDED.items() if k not in ("precision_tried", "precision_checked_images")}
    read = precision.PrecisionCheck.from_manifest(older)
    assert (read.precision, read.min_cosine, read.images, read.tried) == ("int8", 0.999512, 0, ())
    encoder = CheckedFake()
    precision.reuse_precision_check(dict(CHECK_AS_RECORDED), encoder)
    assert encoder.precision == encoder.precision_used == "int8"
    assert encoder.precision_check.reused and encoder.precision_check.tried[0] == precision.Tried("bf16", 0.99812)
    other = CheckedFake()
    precision.reuse_precision_check(dict(CHECK_AS_RECORDED, precision_check_key="another CPU"), other)
    assert other.precision is None and other.precision_check is None, "a check made elsewhere is not reused"


def test_an_encoder_without_precisions_gets_the_base_defaults(tmp_path):
    fake = FakeEncoder()
    assert (fake.precision, fake.precision_used, fake.precision_check, fake.precision_key(), fake.graph) == (
        None, None, None, None, "eager")
    fake.prepare_graph(5000, 32)  # nothing to prepare
    precision.reuse_precision_check(dict(CHECK_AS_RECORDED), fake)
    assert fake.precision_check is None, "nothing checked, nothing reused"
