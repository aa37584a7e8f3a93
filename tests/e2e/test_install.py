"""Installed from a wheel (not editable), vitsearch is one package, vitsearch.*, and writes
nothing inside its own install: the default store and the demo's samples go to the user's folder."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from tests.conftest import REPO, write_scenes


def files_under(folder) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names
            if "__pycache__" not in d}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    if built.returncode != 0:
        pytest.fail(f"cannot build the wheel: {built.stderr[-2000:]}")
    wheel = next(root.glob("vitsearch-*.whl"))
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    return wheel, target


def run_installed(target, code: str, cwd, home) -> subprocess.CompletedProcess:
    """Python without site (so the checkout's editable install is not seen), the wheel first,
    then this environment's other packages."""
    path = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = dict(os.environ, PYTHONPATH=path, XDG_DATA_HOME=str(home), HF_HUB_OFFLINE="1")
    env.pop("VITSEARCH_STORE", None)
    return subprocess.run([sys.executable, "-S", "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_wheel_holds_one_package(installed):
    wheel, _ = installed
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"vitsearch", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops


def test_installed_imports_and_writes_outside_site_packages(installed, tmp_path):
    _, target = installed
    before = files_under(target)
    photos = write_scenes(tmp_path / "photos", range(4))[0].parent
    code = (
        "import importlib.util, sys\n"
        "from vitsearch.search import ImageIndex\nfrom vitsearch.indexer import build_index\n"
        "assert not any(importlib.util.find_spec(m) for m in ('indexer', 'search', 'ui'))\n"
        "import vitsearch.ui.app, vitsearch.ui.serve  # gradio writes stubs beside custom component classes\n"
        "from vitsearch.ui.cli import main\n"
        f"assert main(['index', {str(photos)!r}, '--weights', 'random']) == 0\n"
        "assert main(['demo']) == 0\n"
    )
    result = run_installed(target, code, tmp_path, tmp_path / "xdg")
    assert result.returncode == 0, result.stderr[-3000:]
    assert files_under(target) == before, "nothing is written under site-packages"
    assert (tmp_path / "xdg" / "vitsearch" / "store" / "metadata.duckdb").is_file()
    assert (tmp_path / "xdg" / "vitsearch" / "sample").is_dir()
    assert (tmp_path / "xdg" / "vitsearch" / "demo-store" / "metadata.duckdb").is_file()
