"""Duplicate decisions: written under the writer lock, all or nothing, only for ids that exist."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import REPO, write_scenes
from vitsearch.indexer import build_index
from vitsearch.indexer.errors import ConfigError, StoreInUseError
from vitsearch.indexer.store.decisions import read_decisions, record_keeper, record_not_duplicates
from vitsearch.indexer.store.lock import WriterLock
from vitsearch.indexer.store.store import Store


@pytest.fixture
def store(tmp_path, fake_encoder):
    write_scenes(tmp_path / "photos", range(60))
    build_index([tmp_path / "photos"], tmp_path / "store", encoder=fake_encoder)
    return tmp_path / "store"


def test_many_ids_are_recorded_as_every_pair(store):
    ids = Store(store).live_ids().tolist()
    assert record_not_duplicates(store, ids) == len(ids) * (len(ids) - 1) // 2
    assert record_not_duplicates(store, ids[:3]) == 0, "already known pairs are not written twice"
    assert len(read_decisions(Store(store)).not_duplicates) == len(ids) * (len(ids) - 1) // 2


@pytest.mark.parametrize("call", [
    lambda s: record_keeper(s, 999_999),
    lambda s: record_not_duplicates(s, [1, 2, 999_999]),
    lambda s: record_not_duplicates(s, [1]),
    lambda s: record_not_duplicates(s, [3, 3]),
])
def test_unknown_or_too_few_ids_are_refused_and_nothing_is_written(store, call):
    with pytest.raises(ConfigError):
        call(store)
    decisions = read_decisions(Store(store))
    assert not decisions.not_duplicates and not decisions.keepers


def test_a_kill_before_commit_leaves_no_pair_behind(store):
    ids = Store(store).live_ids().tolist()
    code = ("import sys; from vitsearch.indexer.store.decisions import record_not_duplicates\n"
            "record_not_duplicates(sys.argv[1], [int(i) for i in sys.argv[2:]])")
    result = subprocess.run([sys.executable, "-c", code, str(store), *map(str, ids)], cwd=REPO,
                            env=dict(os.environ, VITSEARCH_FAULT="decisions_commit"), capture_output=True)
    assert result.returncode == -signal.SIGKILL
    assert not read_decisions(Store(store)).not_duplicates, "all pairs or none"


def test_a_decision_waits_for_the_writer_then_lands(store):
    lock = WriterLock(store / "writer.lock")
    lock.acquire()
    threading.Timer(1.0, lock.release).start()
    started = time.monotonic()
    record_keeper(store, 2, wait=30)
    assert time.monotonic() - started >= 0.9
    assert read_decisions(Store(store)).keepers == {2}


def test_a_decision_says_busy_when_the_writer_keeps_the_store(store):
    with WriterLock(store / "writer.lock"), pytest.raises(StoreInUseError, match="busy"):
        record_keeper(store, 2, wait=0.3)
    assert not read_decisions(Store(store)).keepers
