"""`vitsearch index --watch`: live folders followed within seconds, a file being written read
once it is whole, SIGTERM exits 0, and a watcher killed with -9 catches up when restarted."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_cli, scene_bytes, write_scenes
from tests.e2e.test_crash import assert_invariants
from tests.indexer.unprivileged import child_options
from vitsearch.indexer.store.store import Store

LIMIT_SECONDS = 15


def start_watcher(folder: Path, store: Path, *extra: str, **options) -> subprocess.Popen:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "vitsearch.ui.cli", "index", str(folder), "--store", str(store), "--weights",
         "random", "--watch", *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)
    deadline = time.monotonic() + 120
    while not (store / "vectors.faiss").exists():  # the first sync has finished
        assert watcher.poll() is None, watcher.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the watcher never finished its first sync"
        time.sleep(0.2)
    time.sleep(0.5)  # the OS watches are set up right after
    return watcher


def stop(watcher: subprocess.Popen) -> str:
    watcher.send_signal(signal.SIGTERM)
    _, err = watcher.communicate(timeout=120)
    assert watcher.returncode == 0, err[-2000:]
    return err


def rows(store: Path) -> dict[str, tuple]:
    with Store(store).connect() as con:
        found = con.execute("SELECT path, status, content_hash, embedding FROM images").fetchall()
    return {path: (status, content_hash, embedding) for path, status, content_hash, embedding in found}


def wait_until(condition, what: str, limit: float = LIMIT_SECONDS) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < limit, f"not within {limit} s: {what}"
        time.sleep(0.25)
    return time.monotonic() - started


def equals_a_fresh_index(store: Path, folder: Path, tmp_path: Path) -> bool:
    fresh = tmp_path / f"fresh-{time.monotonic_ns()}"
    assert run_cli("index", folder, "--store", fresh, "--weights", "random").returncode == 0
    want, got = rows(fresh), rows(store)
    if set(want) != set(got):
        return False
    for path, (status, _, vector) in want.items():
        if got[path][0] != status or (vector is not None and float(np.dot(vector, got[path][2])) < 0.9999):
            return False
    return True


def test_create_rename_delete_overwrite_within_seconds(tmp_path):
    folder, store, source = tmp_path / "photos", tmp_path / "store", tmp_path / "source"
    folder.mkdir()
    originals = write_scenes(source, range(12))
    watcher = start_watcher(folder, store)
    try:
        for path in originals[:10]:
            shutil.copy(path, folder / path.name)
        took = wait_until(lambda: sum(s == "ok" for s, _, _ in rows(store).values()) == 10, "10 photos indexed")
        print(f"10 copied photos searchable after {took:.1f} s")
        (folder / "scene-001.jpg").rename(folder / "renamed.jpg")
        (folder / "scene-002.jpg").unlink()
        shutil.copy(originals[11], folder / "scene-003.jpg")
        wanted = {str(folder / n) for n in ["renamed.jpg", "scene-003.jpg"]}
        wait_until(lambda: wanted <= set(rows(store)) and str(folder / "scene-002.jpg") not in rows(store)
                   and rows(store)[str(folder / "scene-003.jpg")][1] == hashlib.blake2b(
                       originals[11].read_bytes(), digest_size=16).hexdigest(), "rename, delete and overwrite")
    finally:
        err = stop(watcher)
    assert "moved " in err and "removed " in err and "updated " in err
    assert equals_a_fresh_index(store, folder, tmp_path)
    assert_invariants(store)


def test_a_file_written_slowly_is_indexed_once_whole(tmp_path):
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(folder, range(2))
    watcher = start_watcher(folder, store)
    data = scene_bytes(7, "JPEG", size=(900, 700), quality=95)
    target = folder / "slow.jpg"
    whole = hashlib.blake2b(data, digest_size=16).hexdigest()
    seen = set()
    try:
        with open(target, "wb") as f:
            for start in range(0, len(data), len(data) // 8):  # ~4 s of writing
                f.write(data[start:start + len(data) // 8])
                f.flush()
                row = rows(store).get(str(target))
                if row is not None:
                    seen.add(row[:2])
                time.sleep(0.5)
        wait_until(lambda: rows(store).get(str(target), (None, None))[:2] == ("ok", whole), "the whole file")
    finally:
        err = stop(watcher)
    assert not [s for s in seen if s[0] == "ok" and s[1] != whole], "a half-written file was indexed as ok"
    assert err.count(f"added {target}") == 1, err


def test_kill_9_mid_change_then_restart_catches_up(tmp_path):
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(folder, range(4))
    watcher = start_watcher(folder, store)
    write_scenes(folder, range(4, 30))
    time.sleep(2.5)  # settled: the sync of the new files is under way
    watcher.kill()
    watcher.wait()
    assert_invariants(store)
    (folder / "scene-000.jpg").unlink()  # a change while nobody watched
    watcher = start_watcher(folder, store)
    stop(watcher)
    assert equals_a_fresh_index(store, folder, tmp_path)


def test_unreadable_file_and_folder_end_as_in_a_fresh_index(tmp_path):
    """chmod is an event too: a file made unreadable fails `unreadable` and leaves search, a folder
    that cannot be listed is said and its rows kept (failed), as a fresh index and a re-index do."""
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(folder, range(3))
    write_scenes(folder / "album", range(3, 5))
    options = child_options()  # under root: a watcher that a chmod binds
    watcher = start_watcher(folder, store, **options)
    closed, album = folder / "scene-001.jpg", folder / "album"
    try:
        before = rows(store)
        closed.chmod(0)
        album.chmod(0)
        wait_until(lambda: sorted(s for s, _, _ in rows(store).values()) == ["failed"] * 3 + ["ok"] * 2,
                   "the unreadable file and the folder's two rows failed")
    finally:
        err = stop(watcher)
        album.chmod(0o755)
    assert rows(store).keys() == before.keys(), "nothing removed"
    assert f"skipping {closed}: unreadable (cannot read file: Permission denied)" in err, err[-2000:]
    assert f"skipping {album}: unreadable (cannot list folder: Permission denied)" in err, err[-2000:]
    album.chmod(0)
    fresh = tmp_path / "fresh"
    said = subprocess.run([sys.executable, "-m", "vitsearch.ui.cli", "index", str(folder), "--store", str(fresh),
                           "--weights", "random"], cwd=REPO, capture_output=True, text=True, **options)
    album.chmod(0o755)
    assert said.returncode == 0, said.stderr[-2000:]
    assert [line for line in said.stderr.splitlines() if line.startswith("skipping")] == [
        f"skipping {closed}: unreadable (cannot read file: Permission denied)",
        f"skipping {album}: unreadable (cannot list folder: Permission denied)"]
    want, got = rows(fresh), rows(store)
    assert {p for p, r in want.items() if r[0] == "ok"} == {p for p, r in got.items() if r[0] == "ok"}
    assert all(float(np.dot(want[p][2], got[p][2])) > 0.9999 for p in want if want[p][0] == "ok")
    assert want[str(closed)][0] == got[str(closed)][0] == "failed"
    assert_invariants(store)


def test_polling_follows_changes_too(tmp_path):
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(folder, range(2))
    watcher = start_watcher(folder, store, "--poll", "1")
    try:
        write_scenes(folder, range(2, 5))
        wait_until(lambda: len(rows(store)) == 5, "polled changes")
    finally:
        err = stop(watcher)
    assert "rescanning every 1 s" in err


@pytest.mark.parametrize("value", ["0", "-3", "nan", "soon"])
def test_poll_needs_a_positive_number(tmp_path, value):
    result = run_cli("index", tmp_path, "--poll", value, "--store", tmp_path / "s", "--weights", "random")
    assert result.returncode == 2 and "--poll" in result.stderr


@pytest.mark.slow  # 30+ s of polling
def test_past_the_os_watch_limit_it_falls_back_to_rescanning(tmp_path):
    """In a user namespace allowed 50 inotify watches, a tree of 120 folders cannot be watched:
    the watcher says so, rescans instead, and still follows changes."""
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c",
                            "echo 50 > /proc/sys/user/max_inotify_watches"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot limit inotify watches here: {probe.stderr.decode().strip()}")
    folder, store = tmp_path / "photos", tmp_path / "store"
    for i in range(120):
        (folder / f"day-{i:03d}").mkdir(parents=True)
    write_scenes(folder / "day-000", range(2))
    command = (f"echo 50 > /proc/sys/user/max_inotify_watches && exec {sys.executable} -m vitsearch.ui.cli index "
               f"'{folder}' --store '{store}' --weights random --watch")
    watcher = subprocess.Popen(["unshare", "--user", "--map-root-user", "sh", "-c", command], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (store / "vectors.faiss").exists(), "the first sync", limit=120)
        write_scenes(folder / "day-077", [5])
        wait_until(lambda: len(rows(store)) == 3, "a change found by rescanning", limit=60)
    finally:
        err = stop(watcher)
    assert "cannot watch these folders" in err and "rescanning every" in err, err[-2000:]


@pytest.mark.slow
def test_a_running_server_shows_images_the_watcher_adds(tmp_path):
    """`serve` and `index --watch` on one store: a photo copied in is found by the page's API
    within seconds, without restarting the server."""
    import os

    import httpx
    from gradio_client import Client, handle_file

    from tests.e2e.test_ui import free_port

    folder, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(folder, range(3))
    watcher = start_watcher(folder, store)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "vitsearch.ui.cli", "serve", "--store", str(store), "--port",
                               str(port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(httpx, url), "the server answers", limit=120)
        client = Client(url, verbose=False)
        query = tmp_path / "query.jpg"
        query.write_bytes(scene_bytes(7))

        def top_hit() -> str:
            gallery, _ = client.predict(handle_file(str(query)), None, 1, 0.0, "", "", "", None, None, [],
                                        api_name="/run_search")
            return gallery[0]["caption"] if gallery else ""

        assert not top_hit().endswith("new-7.jpg")
        (folder / "new-7.jpg").write_bytes(scene_bytes(7))
        seconds = wait_until(lambda: top_hit().endswith("new-7.jpg"), "the new photo is the top hit", limit=30)
        assert seconds < LIMIT_SECONDS
    finally:
        server.terminate()
        server.wait(timeout=30)
        stop(watcher)


def _answers(httpx, url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
