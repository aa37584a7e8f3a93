"""A full disk under the store: the error says so plainly (exit 1), the store stays as it was,
and the next run completes. Needs root to mount a small tmpfs (CI runs as root)."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli, write_scenes
from tests.e2e.test_crash import assert_invariants
from tests.tmpfs import mounted_tmpfs
from vitsearch.indexer.store.store import Store


@pytest.fixture
def small_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "24m") as disk:
        yield disk


def fill(disk) -> None:
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass


@pytest.mark.slow  # three real-model runs, ~60 s: the default step stays under ~15 min
def test_disk_full_is_said_plainly_and_loses_nothing(small_disk, tmp_path):
    photos, store = tmp_path / "photos", small_disk / "store"
    write_scenes(photos, range(8))
    assert run_cli("index", photos, "--store", store, "--weights", "random").returncode == 0
    before = sorted(Store(store).live_ids().tolist())
    write_scenes(photos, range(8, 40))
    fill(small_disk)
    result = run_cli("index", photos, "--store", store)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
    (small_disk / "filler").unlink()
    assert sorted(Store(store).live_ids().tolist())[: len(before)] == before, "committed rows are kept"
    assert_invariants(store)
    result = run_cli("index", photos, "--store", store, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert_invariants(store)
    assert len(Store(store).live_ids()) == 40
