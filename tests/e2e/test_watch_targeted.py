"""`index --watch` syncs what its events name: random churn (creates, overwrites, renames and moves
across folders, copies, folders made, moved and deleted) ends as a fresh index; a change no event
names waits for a whole sync; a deleted root is watched again once back; an idle watcher is idle."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.test_crash import assert_invariants
from tests.e2e.test_watch import equals_a_fresh_index, rows, start_watcher, stop, wait_until
from tests.indexer.churn import Churn, seed_tree, small_photo

pytestmark = pytest.mark.slow  # ~2 min of real watchers: the README's run stays near 10 min; CI's slow step runs them


def on_disk(folder: Path) -> dict[str, str]:
    """path -> content hash of every photo under `folder`."""
    return {str(p): hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
            for p in folder.rglob("*.jpg") if p.is_file()}


def in_store(store: Path) -> dict[str, str]:
    return {path: digest for path, (status, digest, _) in rows(store).items() if status == "ok"}


def test_random_churn_under_the_watcher_ends_as_a_fresh_index(tmp_path):
    rng = random.Random(3434)
    folder, store = tmp_path / "photos", tmp_path / "store"
    seed_tree(folder, folders=6)
    watcher = start_watcher(folder, store)
    churn = Churn(folder, rng)
    done = []
    try:
        for _ in range(60):
            done.append(churn.step()[0])
            time.sleep(rng.choice([0.0, 0.0, 0.1, 0.5, 2.0]))  # some bursts merge, some are synced apart
        wait_until(lambda: in_store(store) == on_disk(folder), "the store follows the churn", limit=60)
    finally:
        err = stop(watcher)
    assert "rescanning" not in err, err[-2000:]
    assert "moved " in err and "removed " in err, err[-3000:]
    assert equals_a_fresh_index(store, folder, tmp_path), "\n".join(done)
    assert_invariants(store)


def test_a_change_no_event_names_waits_for_a_whole_sync(tmp_path):
    """Written through a hard link outside the roots, a photo changes without an event under them:
    the next targeted sync (another folder's) leaves it, the whole sync at a restart takes it."""
    folder, store = tmp_path / "photos", tmp_path / "store"
    seed_tree(folder)
    quiet, elsewhere = folder / "album-0" / "s1.jpg", tmp_path / "elsewhere.jpg"
    os.link(quiet, elsewhere)
    watcher = start_watcher(folder, store)
    try:
        old = rows(store)[str(quiet)][1]
        with open(elsewhere, "r+b") as f:  # in place: the same inode as the watched name
            f.write(small_photo(77))
        added = folder / "album-2" / "new.jpg"
        added.write_bytes(small_photo(78))
        wait_until(lambda: str(added) in in_store(store), "the named change")
        time.sleep(2)
        assert rows(store)[str(quiet)][1] == old, "a targeted sync looked beyond what its events named"
    finally:
        stop(watcher)
    watcher = start_watcher(folder, store)
    stop(watcher)
    assert in_store(store)[str(quiet)] == on_disk(folder)[str(quiet)] != old


def test_a_deleted_root_is_watched_again_once_back(tmp_path):
    folder, store = tmp_path / "photos", tmp_path / "store"
    seed_tree(folder)
    watcher = start_watcher(folder, store)
    try:
        shutil.rmtree(folder)
        time.sleep(3)
        seed_tree(folder, folders=2, per_folder=2)
        (folder / "back.jpg").write_bytes(small_photo(90))
        wait_until(lambda: in_store(store) == on_disk(folder), "the root's new content", limit=30)
        (folder / "album-0" / "later.jpg").write_bytes(small_photo(91))
        wait_until(lambda: str(folder / "album-0" / "later.jpg") in in_store(store), "a change after it came back")
    finally:
        err = stop(watcher)
    assert "lost the watch of" in err and "watching " in err, err[-2000:]
    assert equals_a_fresh_index(store, folder, tmp_path)


def test_an_idle_watcher_uses_no_cpu_to_speak_of_and_writes_nothing(tmp_path):
    folder, store = tmp_path / "photos", tmp_path / "store"
    seed_tree(folder)
    watcher = start_watcher(folder, store)
    try:
        (folder / "one-change.jpg").write_bytes(small_photo(5))
        wait_until(lambda: str(folder / "one-change.jpg") in in_store(store), "a change")
        time.sleep(3)  # the sync's connection is let go
        cpu, written, started = cpu_seconds(watcher.pid), written_bytes(watcher.pid), time.monotonic()
        time.sleep(20)
        idle_cpu = (cpu_seconds(watcher.pid) - cpu) / (time.monotonic() - started)
        idle_written = written_bytes(watcher.pid) - written
    finally:
        stop(watcher)
    print(f"idle watcher: {100 * idle_cpu:.2f}% of a core, {idle_written} bytes written")
    assert idle_cpu < 0.01 and idle_written == 0


def cpu_seconds(pid: int) -> float:
    """User and system time of a process, all its threads (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def written_bytes(pid: int) -> int:
    """Bytes the process caused to be written to storage (/proc/PID/io write_bytes)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0
