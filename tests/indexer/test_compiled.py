"""The compiled model graph (torch.compile with frozen weights): chosen only for runs long enough
to pay for compiling, equal to the eager model, recorded in the store, and a failure to compile
leaves the run eager rather than failed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli, write_scenes
from vitsearch.indexer import compiled
from vitsearch.indexer.errors import ConfigError
from vitsearch.indexer.store import Store


def test_auto_compiles_only_long_cpu_runs_with_a_compiler(monkeypatch):
    monkeypatch.setattr(compiled, "has_cpp_compiler", lambda: True)
    long_run = compiled.COMPILE_MIN_IMAGES
    assert compiled.should_compile("auto", device="cpu", precision="bf16", images=long_run)
    assert not compiled.should_compile("auto", device="cpu", precision="bf16", images=long_run - 1)
    assert not compiled.should_compile("auto", device="cpu", precision="int8", images=long_run), "int8 stays eager"
    assert not compiled.should_compile("auto", device="cuda", precision="fp16", images=long_run)
    assert not compiled.should_compile("no", device="cpu", precision="bf16", images=long_run)
    assert compiled.should_compile("yes", device="cpu", precision="fp32", images=1)
    monkeypatch.setattr(compiled, "has_cpp_compiler", lambda: False)
    assert not compiled.should_compile("auto", device="cpu", precision="bf16", images=long_run)
    with pytest.raises(ConfigError, match="--compile"):
        compiled.should_compile("always", device="cpu", precision="bf16", images=1)


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
    done = index(folder, tmp_path / "compiled", "--compile", "yes")
    assert "compiling the model" in done["stderr"]
    assert done["info"]["model_graph"] == "compiled" and done["info"]["images"] == 9
    ours, reference = embeddings(tmp_path / "compiled"), embeddings(tmp_path / "eager")
    assert ours.keys() == reference.keys()
    assert min(float(ours[p] @ reference[p]) for p in ours) >= 0.9999


@pytest.mark.slow
def test_a_failed_compile_runs_eagerly(tmp_path):
    folder = tmp_path / "photos"
    write_scenes(folder, range(4))
    done = index(folder, tmp_path / "store", "--compile", "yes", env={"CXX": "/nonexistent/c++"})
    assert "running it eagerly" in done["stderr"]
    assert done["info"]["model_graph"] == "eager" and done["info"]["images"] == 4
