"""Default locations: a source checkout keeps data/, an installed copy uses the user's folder."""

from __future__ import annotations

from pathlib import Path

import vitsearch.indexer.locations as locations
from tests.conftest import REPO


def test_source_checkout_uses_its_data_folder(monkeypatch):
    monkeypatch.delenv("VITSEARCH_STORE", raising=False)
    assert locations.checkout_data_dir() == REPO / "data"
    assert locations.default_store_dir() == REPO / "data" / "store"


def test_an_installed_copy_never_writes_beside_its_code(monkeypatch, tmp_path):
    install = tmp_path / "site-packages" / "vitsearch"
    (install / "indexer").mkdir(parents=True)
    (install / "data").mkdir()  # even a stray data/ folder does not make it a checkout
    monkeypatch.setattr(locations, "_CHECKOUT", install)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("VITSEARCH_STORE", raising=False)
    assert locations.checkout_data_dir() is None
    assert locations.default_store_dir() == tmp_path / "xdg" / "vitsearch" / "store"


def test_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("VITSEARCH_STORE", str(tmp_path / "mine"))
    assert locations.default_store_dir() == Path(tmp_path / "mine")
