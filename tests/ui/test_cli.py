"""The real `vitsearch` command end to end, with the real architecture and random weights."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, run_cli, write_scenes
from tests.hostile import make_hostile_folder
from vitsearch.indexer.store.lock import WriterLock
from vitsearch.indexer.store.store import Store

SUMMARY_KEYS = ["added", "updated", "unchanged", "moved", "removed", "failed", "seconds", "images_per_s"]
INFO_KEYS = {"images", "vectors", "failed", "failures", "model", "weights", "index_type", "dim"}


def test_help_is_light_no_heavy_imports(tmp_path):
    code = (
        "import sys\nfrom vitsearch.ui.cli import main\n"
        "for argv in (['--help'], ['index', '--help'], ['search', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('torch', 'timm', 'faiss', 'duckdb', 'gradio', 'numpy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = _python(code, tmp_path)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert "--weights" in result.stdout and "--exclude" in result.stdout


def test_the_fast_exit_flushes_runs_exit_handlers_and_waits_for_working_threads(tmp_path):
    """The command ends without interpreter teardown (see ui.process_exit); what a normal exit
    does for us must still happen: buffered output out, atexit handlers run, the exit code kept,
    and a non-daemon thread still working is waited for."""
    code = (
        "import atexit, threading, time\nfrom vitsearch.ui.process_exit import exit_process\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "def late():\n    time.sleep(0.3)\n    open('late.txt', 'w').write('done')\n"
        "threading.Thread(target=late).start()\n"
        "print('x' * 100000, end='')\nexit_process(3)\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "x" * 100000 + "handler ran\n"
    assert (tmp_path / "late.txt").read_text() == "done"
    quick = _python(code.replace("threading.Thread(target=late).start()\n", ""), tmp_path)
    assert quick.returncode == 3 and quick.stdout.endswith("xhandler ran\n"), quick.stderr


def test_the_parsers_choices_are_the_librarys_constants():
    from vitsearch.indexer.model.compiled import COMPILE_MODES
    from vitsearch.indexer.model.precision import PRECISION_CHOICES
    from vitsearch.indexer.store.ann import INDEX_TYPES
    from vitsearch.search.collection_map import METHODS
    from vitsearch.search.tiers import TIERS
    from vitsearch.ui.cli import build_parser

    choices = _choices(build_parser())
    assert choices["index", "precision"] == PRECISION_CHOICES
    assert choices["index", "compile"] == COMPILE_MODES
    assert choices["reindex", "index_type"] == ("auto", *INDEX_TYPES)
    assert choices["map", "method"] == METHODS
    assert choices["dupes", "tier"] == TIERS


def _choices(parser: argparse.ArgumentParser) -> dict[tuple[str, str], tuple]:
    """(command, dest) -> the choices its flag offers, for every subcommand."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {(name, action.dest): tuple(action.choices) for name, sub in commands.choices.items()
            for action in sub._actions if action.choices is not None}


def test_main_runs_in_process_and_maps_errors_to_exit_codes(tmp_path, capsys):
    from vitsearch.ui.cli import main

    assert main(["info", "--store", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith(f"Error: no store at {tmp_path / 'none'}")
    assert main([]) == 2 and "COMMAND" in capsys.readouterr().out


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_imports_flow_one_way(tmp_path):
    code = ("import sys, vitsearch.indexer, vitsearch.indexer.build, vitsearch.indexer.store.vectors\n"
            "print(sorted(m for m in ('vitsearch.search', 'vitsearch.ui') if m in sys.modules))")
    result = _python(code, tmp_path)
    assert result.stdout.strip() == "[]", result.stderr
    code = "import sys, vitsearch.search, vitsearch.search.dupes\nprint('vitsearch.ui' in sys.modules)"
    result = _python(code, tmp_path)
    assert result.stdout.strip() == "False", result.stderr


def test_one_package_no_generic_top_level_names(tmp_path):
    """From outside the checkout only vitsearch.* imports: nothing named indexer, search or ui."""
    code = ("import importlib.util, json\n"
            "from vitsearch.search import ImageIndex\nfrom vitsearch.indexer import build_index\n"
            "found = [m for m in ('indexer', 'search', 'ui') if importlib.util.find_spec(m)]\n"
            "print(json.dumps(found))")
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_layers_keep_their_jobs():
    """No SQL in ui/, and nothing under search/ opens the store for writing."""
    for path in (REPO / "ui").rglob("*.py"):
        text = path.read_text()
        for word in ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", ".connect(", ".execute("):
            assert word not in text, f"{path.name} runs SQL ({word.strip()})"
    for path in (REPO / "search").glob("*.py"):
        text = path.read_text()
        for word in ("read_only=False", "WriterLock", ".transaction("):
            assert word not in text, f"search/{path.name} writes the store ({word})"


@pytest.mark.e2e  # the real CLI or model in child processes
@pytest.mark.parametrize("decode", ["cpu", "device"])
def test_hostile_folder_indexes_with_exit_zero(tmp_path, decode):
    """Both input paths (Pillow in reader threads; decoding on the model's device, here the CPU)
    index the same files and fail the same ones for the same reasons."""
    folder = tmp_path / "hostile"
    valid, invalid = make_hostile_folder(folder)
    store = tmp_path / "store"
    result = run_cli("index", folder, "--store", store, "--weights", "random", "--json", "--decode", decode)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert list(summary) == SUMMARY_KEYS
    assert summary["added"] == len(valid) and summary["failed"] == len(invalid)
    for name in invalid:
        assert f"skipping {folder / name}" in result.stderr

    with Store(store).connect() as con:
        rows = {os.path.relpath(p, folder): (s, e, v) for p, s, e, v in
                con.execute("SELECT path, status, error, embedding FROM images").fetchall()}
    assert {n for n, (s, _, _) in rows.items() if s == "ok"} == valid
    for name, reason in invalid.items():
        status, error, vector = rows[name]
        assert status == "failed" and vector is None
        assert reason is None or error == reason, (name, error)
    assert not any("secret" in n or n.endswith((".html", ".svg")) for n in rows)

    info = json.loads(run_cli("info", "--store", store, "--json").stdout)
    assert INFO_KEYS <= set(info)
    assert info["images"] == info["vectors"] == len(valid)
    assert info["failed"] == len(invalid) and info["weights"] == "random:seed=0" and info["dim"] == 512

    upright = np.asarray(rows["orientation-1.jpg"][2])
    for orientation in range(2, 9):
        other = np.asarray(rows[f"orientation-{orientation}.jpg"][2])
        assert float(upright @ other) >= 0.999, orientation

    again = json.loads(run_cli("index", folder, "--store", store, "--json").stdout)
    assert again["added"] == again["updated"] == again["failed"] == 0
    assert again["unchanged"] == len(valid) + len(invalid)


def test_search_and_export(tmp_path):
    folder = tmp_path / "photos"
    paths = write_scenes(folder, range(5))
    store = tmp_path / "store"
    assert run_cli("index", folder, "--store", store, "--weights", "random").returncode == 0

    text = run_cli("search", paths[2], "--store", store, "-k", "3")
    lines = text.stdout.splitlines()
    assert text.returncode == 0 and len(lines) == 3
    score, path = lines[0].split("\t")
    assert path == str(paths[2]) and float(score) > 0.999

    output = run_cli("search", "id:1", "--store", store, "--json", "-k", "2").stdout
    hits = [json.loads(line) for line in output.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2] and hits[0]["id"] == 1
    assert {"query", "rank", "score", "path", "id"} <= set(hits[0])

    out = tmp_path / "out" / "vectors.parquet"
    assert run_cli("export", "--store", store, out).returncode == 0
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pylist()
    assert len(table) == 5
    assert {"path", "embedding", "width", "height", "size", "mtime", "format"} <= set(table[0])
    by_path = {r["path"]: r for r in table}
    assert len(by_path[str(paths[0])]["embedding"]) == 512
    assert by_path[str(paths[0])]["width"] == 320


def test_offline_without_weights_exits_2_with_the_fix(tmp_path):
    write_scenes(tmp_path / "photos", range(2))
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")}
    result = run_cli("index", tmp_path / "photos", "--store", tmp_path / "store", env=env)
    assert result.returncode == 2
    assert "--weights FILE" in result.stderr and "--weights random" in result.stderr
    assert result.stderr.startswith("Error:")


def test_second_writer_exits_nonzero_naming_the_holder(tmp_path):
    write_scenes(tmp_path / "photos", range(2))
    store = tmp_path / "store"
    assert run_cli("index", tmp_path / "photos", "--store", store, "--weights", "random").returncode == 0
    with WriterLock(store / "writer.lock"):
        result = run_cli("index", tmp_path / "photos", "--store", store)
        assert result.returncode == 1
        assert f"in use by process {os.getpid()}" in result.stderr
        info = run_cli("info", "--store", store, "--json")
        assert info.returncode == 0 and json.loads(info.stdout)["images"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["index", "/definitely/not/here", "--weights", "random"], "not a folder"),
        (["info"], "no store at"),
        (["reindex"], "no store at"),
        (["export", "out.parquet"], "no store at"),
    ],
)
def test_usage_and_configuration_errors_exit_2(tmp_path, args, message):
    result = run_cli(*args, "--store", tmp_path / "none")
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.e2e  # the real CLI or model in child processes
def test_other_weights_against_a_store_are_refused(tmp_path):
    import torch

    write_scenes(tmp_path / "photos", range(2))
    store = tmp_path / "store"
    assert run_cli("index", tmp_path / "photos", "--store", store, "--weights", "random").returncode == 0
    from vitsearch.indexer.model.weights import build_model

    model, _ = build_model("random")
    state = {k: v + 0.01 for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "other.pth")
    result = run_cli("index", tmp_path / "photos", "--store", store, "--weights", tmp_path / "other.pth")
    assert result.returncode == 2 and "different weights" in result.stderr and "--store NEW_DIR" in result.stderr


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("usage")
    write_scenes(root / "photos", range(4))
    result = run_cli("index", root / "photos", "--store", root / "store", "--weights", "random")
    assert result.returncode == 0, result.stderr
    (root / "empty").mkdir()
    (root / "a-file").write_text("not a store")
    return root


@pytest.mark.parametrize("args, message", [
    (["dupes", "--store", "{store}", "--keep", "999"], "no indexed image has id 999"),
    (["dupes", "--store", "{store}", "--not-duplicates", "1", "999"], "no indexed image has id 999"),
    (["dupes", "--store", "{store}", "--not-duplicates", "1"], "at least two different"),
    (["info", "--store", "{root}/a-file"], "is a file, not a store directory"),
    (["search", "{root}/photos/scene-000.jpg", "--store", "{store}", "--min-score", "nan"], "between -1 and 1"),
    (["search", "{root}/empty", "--store", "{store}"], "no image files in"),
    (["serve", "--store", "{store}", "--port", "70000"], "between 1 and 65535"),
    (["serve", "--store", "{store}", "--port", "http"], "not a port number"),
    (["explain", "id:1", "id:2", "--store", "{store}", "--out", "{root}/heat.html"], "--out must be a .png file path"),
    (["explain", "id:1", "id:2", "--store", "{store}", "--out", "{root}/empty"], "--out must be a .png file path"),
    (["info", "--store", "{root}/none"], "no store at {root}/none: build one with `vitsearch index FOLDER --store"),
    # a missing query file is the same error whichever command reads it
    (["search", "{root}/none.jpg", "--store", "{store}"], "no such file: {root}/none.jpg"),
    (["search", "{root}/none.jpg", "--box", "0,0,9,9", "--store", "{store}"], "no such file: {root}/none.jpg"),
    (["explain", "{root}/none.jpg", "id:1", "--store", "{store}"], "no such file: {root}/none.jpg"),
    (["explain", "id:1", "{root}/none.jpg", "--store", "{store}"], "no such file: {root}/none.jpg"),
])
def test_usage_errors_exit_2_with_a_message(small_store, args, message):
    args = [a.format(store=small_store / "store", root=small_store) for a in args]
    message = message.format(root=small_store)
    result = run_cli(*args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr


def test_reindex_says_when_a_small_store_stays_flat(small_store):
    result = run_cli("reindex", "--store", small_store / "store", "--index-type", "ivf-flat")
    assert result.returncode == 0, result.stderr
    assert "needs at least 1000 images" in result.stderr and "flat" in result.stderr


def test_decisions_through_the_cli(small_store):
    store = small_store / "store"
    result = run_cli("dupes", "--store", store, "--not-duplicates", "1", "2", "3")
    assert result.returncode == 0 and "3 new pairs" in result.stderr, result.stderr
    assert run_cli("dupes", "--store", store, "--keep", "2").returncode == 0


def test_library_errors_name_the_argument_and_the_command_line_its_flag(tmp_path, capsys):
    """A Python caller reads `where ...` (the parameter it passed); the command line says --where."""
    from vitsearch.indexer.errors import ConfigError
    from vitsearch.search.filters import validate_where
    from vitsearch.ui.cli import main

    with pytest.raises(ConfigError, match="^where must be one expression") as raised:
        validate_where("width > 1; DROP TABLE images")
    assert raised.value.parameter == "where"
    assert main(["dupes", "--store", str(tmp_path), "--resolve", " , "]) == 2
    said = capsys.readouterr().err
    assert "Error: --resolve needs at least one rule" in said


def test_the_progress_bar_starts_anew_for_each_phase():
    """progress(phase, done, total): each phase of a run gets a bar of its own and its name."""
    import io
    from unittest import mock

    from vitsearch.ui.progress import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    shown = Terminal()
    with mock.patch("sys.stderr", shown), ProgressBar("indexing", "files") as bar:
        bar.update("index", 0, 4)
        bar.update("index", 4, 4)
        first = bar.bar
        bar.update("signatures", 1, 10)
        assert bar.bar is not first and bar.bar.total == 10
    assert "indexing" in shown.getvalue() and "signatures" in shown.getvalue()
