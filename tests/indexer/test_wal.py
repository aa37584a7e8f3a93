"""A writer's close leaves DuckDB's write-ahead log beside the file (no checkpoint per change):
readers see what it holds, and a file restored without its log is refused with the fix."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import FakeEncoder, write_scenes
from vitsearch.indexer import build_index
from vitsearch.indexer.errors import StoreError
from vitsearch.indexer.store.connections import close_lease
from vitsearch.indexer.store.store import DB_NAME, Store


def test_a_change_is_in_the_log_and_readers_see_it(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(photos, range(4))
    build_index([photos], store, encoder=FakeEncoder())
    close_lease(str(store / DB_NAME))
    size = (store / DB_NAME).stat().st_size
    write_scenes(photos, range(4, 6))
    build_index([photos], store, encoder=FakeEncoder())
    close_lease(str(store / DB_NAME))
    assert (store / f"{DB_NAME}.wal").stat().st_size > 0, "the change stays in the log"
    assert (store / DB_NAME).stat().st_size == size, "and the file is not rewritten for it"
    assert len(Store(store).live_ids()) == 6


def test_a_file_restored_without_its_log_is_refused_with_the_fix(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(photos, range(4))
    build_index([photos], store, encoder=FakeEncoder())
    close_lease(str(store / DB_NAME))
    with Store(store, read_only=False).connect() as con:
        con.execute("CHECKPOINT")  # the backup: a file with nothing in its log
    close_lease(str(store / DB_NAME))
    shutil.copy2(store / DB_NAME, tmp_path / "backup.duckdb")
    write_scenes(photos, range(4, 6))
    build_index([photos], store, encoder=FakeEncoder())
    close_lease(str(store / DB_NAME))
    with Store(store, read_only=False).connect() as con:
        con.execute("CHECKPOINT")
    write_scenes(photos, range(6, 8))
    build_index([photos], store, encoder=FakeEncoder())  # a log that follows the newer file
    close_lease(str(store / DB_NAME))
    shutil.copy2(tmp_path / "backup.duckdb", store / DB_NAME)  # restored alone
    with pytest.raises(StoreError, match="restore or copy both"):
        Store(store).live_ids()
