"""The compiled model graph (AOTInductor, frozen weights): built only in runs long enough to pay
for it, kept in the cache and loaded by later runs without building again, equal to the eager
model, recorded in the store; a failure to build or load leaves the run eager rather than failed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli, write_scenes
from vitsearch.indexer import build_index
from vitsearch.indexer.errors import ConfigError
from vitsearch.indexer.locations import cache_root
from vitsearch.indexer.model import compiled
from vitsearch.indexer.model.encoder import load_encoder
from vitsearch.indexer.store.store import Store


def test_auto_builds_only_in_long_cpu_runs_with_a_compiler_and_then_reuses_the_graph(monkeypatch):
    monkeypatch.setattr(compiled, "has_cpp_compiler", lambda: True)
    long_run = compiled.COMPILE_MIN_IMAGES
    assert compiled.should_compile("auto", device="cpu", precision="bf16", images=long_run)
    assert not compiled.should_compile("auto", device="cpu", precision="bf16", images=long_run - 1)
    assert not compiled.should_compile("auto", device="cpu", precision="int8", images=long_run), "int8 stays eager"
    assert not compiled.should_compile("auto", device="cuda", precision="fp16", images=long_run)
    assert not compiled.should_compile("no", device="cpu", precision="bf16", images=long_run)
    assert compiled.should_compile("yes", device="cpu", precision="fp32", images=1)
    # A graph built before serves any run with a full batch, and only those.
    assert compiled.should_compile("auto", device="cpu", precision="bf16", images=32, batch_size=32, cached=True)
    assert not compiled.should_compile("auto", device="cpu", precision="bf16", images=31, batch_size=32, cached=True)
    assert not compiled.should_compile("no", device="cpu", precision="bf16", images=99, batch_size=32, cached=True)
    # A build that failed on this machine is not tried again by auto; `yes` tries.
    assert not compiled.should_compile("auto", device="cpu", precision="bf16", images=long_run, failed_before=True)
    assert compiled.should_compile("yes", device="cpu", precision="bf16", images=1, failed_before=True)
    monkeypatch.setattr(compiled, "has_cpp_compiler", lambda: False)
    assert not compiled.should_compile("auto", device="cpu", precision="bf16", images=long_run)
    with pytest.raises(ConfigError, match="compile_mode='always'"):
        compiled.should_compile("always", device="cpu", precision="bf16", images=1)


def test_the_graph_is_kept_per_weights_precision_and_batch_size():
    one = compiled.graph_path(model_name="m", fingerprint="a", precision="bf16", batch_size=32)
    assert one == compiled.graph_path(model_name="m", fingerprint="a", precision="bf16", batch_size=32)
    others = {compiled.graph_path(model_name="m", fingerprint="b", precision="bf16", batch_size=32),
              compiled.graph_path(model_name="m", fingerprint="a", precision="fp32", batch_size=32),
              compiled.graph_path(model_name="m", fingerprint="a", precision="bf16", batch_size=16)}
    assert one not in others and len(others) == 3
    assert one.parent == cache_root() / "compiled"


def test_pruning_keeps_the_most_recently_used_graphs(tmp_path):
    now = time.time()
    ages = {"a": 500, "b": 40, "c": 300, "d": 10, "e": 100}  # seconds since last use
    for name, age in ages.items():
        (tmp_path / f"bf16-b32-{name}.pt2").write_bytes(b"package")
        os.utime(tmp_path / f"bf16-b32-{name}.pt2", (now - age, now - age))
    for name, age in {"old": 1000, "new": 5}.items():
        (tmp_path / f"bf16-b32-{name}.failed").write_text("no compiler")
        os.utime(tmp_path / f"bf16-b32-{name}.failed", (now - age, now - age))
    removed = compiled.prune_graphs(tmp_path, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bf16-b32-b.pt2", "bf16-b32-d.pt2", "bf16-b32-e.pt2", "bf16-b32-new.failed"]
    assert sorted(p.name for p in removed) == ["bf16-b32-a.pt2", "bf16-b32-c.pt2", "bf16-b32-old.failed"]
    assert compiled.prune_graphs(tmp_path, keep=3) == [], "nothing more to remove"


def test_a_damaged_graph_is_removed_and_the_run_goes_on_eagerly(tmp_path, capsys):
    folder = tmp_path / "photos"
    write_scenes(folder, range(5))
    eager = load_encoder("random", precision="fp32", compile_mode="no")
    build_index([folder], tmp_path / "eager", encoder=eager, batch_size=4)
    ours = load_encoder("random", precision="fp32", compile_mode="auto")
    path = compiled.graph_path(model_name=ours.model_name, fingerprint=ours.weights.fingerprint,
                               precision="fp32", batch_size=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 not a package")
    build_index([folder], tmp_path / "store", encoder=ours, batch_size=4)
    assert "running it eagerly" in capsys.readouterr().err
    assert not path.exists(), "the damaged graph is removed: the next long run builds a new one"
    assert ours.graph == "eager"
    assert Store(tmp_path / "store").manifest()["model_graph"] == "eager"
    got, want = embeddings(tmp_path / "store"), embeddings(tmp_path / "eager")
    assert {Path(p).name for p in got} == {Path(p).name for p in want}
    by_name = {Path(p).name: v for p, v in want.items()}
    assert all(np.array_equal(v, by_name[Path(p).name]) for p, v in got.items())


def test_a_c_compiler_is_found_on_the_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not compiled.has_cpp_compiler()
    fake = tmp_path / "g++"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert compiled.has_cpp_compiler()


def embeddings(store: Path) -> dict[str, np.ndarray]:
    with Store(store).connect() as con:
        rows = con.execute("SELECT path, embedding FROM images WHERE status = 'ok'").fetchall()
    return {p: np.asarray(v, np.float32) for p, v in rows}


def index(folder: Path, store: Path, *flags: str, env: dict | None = None) -> dict:
    result = run_cli("index", str(folder), "--store", str(store), "--weights", "random", "--precision", "fp32",
                     "--batch-size", "4", *flags, env=env)
    assert result.returncode == 0, result.stderr
    return {"stderr": result.stderr, "info": json.loads(run_cli("info", "--store", str(store), "--json").stdout)}


@pytest.mark.slow
def test_compiled_run_equals_the_eager_one_and_is_recorded(tmp_path):
    folder = tmp_path / "photos"
    write_scenes(folder, range(9))  # two full batches of 4 go through the graph, the last image eagerly
    eager = index(folder, tmp_path / "eager", "--compile", "no")
    assert eager["info"]["model_graph"] == "eager"
    # Packages of an older torch or CPU, unused for a day: a build keeps only the most recent.
    graphs = cache_root() / "compiled"
    graphs.mkdir(parents=True, exist_ok=True)
    day_ago = time.time() - 86400
    for n in range(compiled.KEEP_GRAPHS):
        (graphs / f"fp32-b4-old{n}.pt2").write_bytes(b"an older package")
        os.utime(graphs / f"fp32-b4-old{n}.pt2", (day_ago - n, day_ago - n))
    done = index(folder, tmp_path / "compiled", "--compile", "yes")
    assert "compiling the model" in done["stderr"]
    kept = sorted(p.name for p in graphs.glob("*.pt2"))
    assert len(kept) == compiled.KEEP_GRAPHS and f"fp32-b4-old{compiled.KEEP_GRAPHS - 1}.pt2" not in kept, kept
    built = [p for p in graphs.glob("*.pt2") if not p.name.startswith("fp32-b4-old")]
    assert len(built) == 1
    os.utime(built[0], (day_ago, day_ago))
    assert done["info"]["model_graph"] == "compiled" and done["info"]["images"] == 9
    ours, reference = embeddings(tmp_path / "compiled"), embeddings(tmp_path / "eager")
    assert ours.keys() == reference.keys()
    assert min(float(ours[p] @ reference[p]) for p in ours) >= 0.9999
    # A later process, in auto mode on a run far too small to build, loads the kept graph.
    again = index(folder, tmp_path / "again", "--compile", "auto")
    assert "compiling the model" not in again["stderr"], again["stderr"]
    assert again["info"]["model_graph"] == "compiled"
    assert built[0].stat().st_mtime > day_ago + 3600, "a load marks the package used"
    assert embeddings(tmp_path / "again").keys() == reference.keys()


@pytest.mark.slow
def test_a_failed_compile_runs_eagerly(tmp_path):
    folder = tmp_path / "photos"
    write_scenes(folder, range(4))
    # batch 2: a graph no other test has built and kept
    done = index(folder, tmp_path / "store", "--compile", "yes", "--batch-size", "2", env={"CXX": "/nonexistent/c++"})
    assert "running it eagerly" in done["stderr"]
    assert done["info"]["model_graph"] == "eager" and done["info"]["images"] == 4
    notes = list((cache_root() / "compiled").glob("*.failed"))
    assert any("C++ compiler" in note.read_text() or "nonexistent" in note.read_text() for note in notes), notes


class _StandInGraph(compiled.CompiledForward):
    """A compiled graph as a run sees it, without a 30-s build: `runner` stands in for the package."""

    def __init__(self, encoder, path: Path, runner):
        super().__init__(encoder.model, encoder_forward(), 16, encoder.precision, path,
                         input_size=tuple(encoder.data_config["input_size"][1:]), build=True)
        self._runner = runner


def encoder_forward():
    from vitsearch.indexer.model.encoder import _pre_logits

    return _pre_logits


@pytest.mark.parametrize("honest", [True, False])
def test_a_graph_built_after_the_precision_check_is_checked_on_its_first_batch(random_encoder, tmp_path, honest):
    """A long run builds its graph mid-run, after its first batch checked the precision (and a
    run under a check reused from the store checks nothing): the graph's first batch is checked
    against fp32, and a graph that misses is dropped, with its package, and the batch runs eagerly."""
    import dataclasses

    import torch

    from vitsearch.indexer.model.precision import PrecisionCheck

    forward = encoder_forward()
    runner = (lambda batch: forward(random_encoder.model, batch)) if honest else (lambda batch: torch.flip(
        forward(random_encoder.model, batch), dims=[0]))  # each image gets another's vector
    path = tmp_path / "graph.pt2"
    path.write_bytes(b"package")
    encoder = dataclasses.replace(random_encoder, precision_check=PrecisionCheck("fp32", 1.0, 8),
                                  graph_unchecked=True)
    encoder.compiled = _StandInGraph(encoder, path, runner)
    torch.manual_seed(0)
    batch = torch.randn(16, 3, *encoder.data_config["input_size"][1:])
    vectors = encoder.encode(batch)
    eager = dataclasses.replace(random_encoder).encode(batch)
    assert not encoder.graph_unchecked and np.allclose(vectors, eager, atol=1e-4), "the batch's vectors are right"
    assert (encoder.compiled.failed is None) == honest and path.exists() == honest
    assert compiled.failure_note(path).exists() != honest
