"""Videos under `index --watch` and under SIGKILL: a clip copied in becomes searchable, a rename is
followed without a decode, and a run killed in the middle of a video resumes to a fresh index's store."""

from __future__ import annotations

import shutil
import signal

import numpy as np

from tests.conftest import run_cli, write_scenes
from tests.e2e.test_crash import assert_invariants
from tests.e2e.test_watch import start_watcher, stop, wait_until
from tests.videos import scene_shots, write_clip
from vitsearch.indexer.store.store import Store


def snapshot(store) -> dict[str, tuple]:
    """Each row's status, hash and embedding, with its frames' times and embeddings."""
    with Store(store).connect() as con:
        rows = con.execute("SELECT id, path, status, content_hash, embedding FROM images").fetchall()
        frames = con.execute("SELECT video_id, t, embedding FROM frames ORDER BY video_id, t").fetchall()
    by_video: dict[int, list] = {}
    for video_id, t, vector in frames:
        by_video.setdefault(video_id, []).append((round(t, 3), np.asarray(vector, np.float32)))
    return {path: (status, digest, None if vector is None else np.asarray(vector, np.float32), by_video.get(i, []))
            for i, path, status, digest, vector in rows}


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for path, (status, digest, vector, frames) in want.items():
        assert got[path][:2] == (status, digest), path
        if vector is not None:
            assert float(got[path][2] @ vector) > 0.9999, path
        assert [t for t, _ in got[path][3]] == [t for t, _ in frames], path
        assert all(float(a @ b) > 0.9999 for (_, a), (_, b) in zip(got[path][3], frames, strict=True)), path


def fresh_index(folder, tmp_path) -> dict:
    fresh = tmp_path / "fresh"
    result = run_cli("index", folder, "--store", fresh, "--weights", "random")
    assert result.returncode == 0, result.stderr[-2000:]
    return snapshot(fresh)


def test_a_watched_folder_follows_videos(tmp_path):
    folder, store, source = tmp_path / "library", tmp_path / "store", tmp_path / "source"
    write_scenes(folder, range(2))
    write_clip(folder / "first.mp4", scene_shots([10, 11]), gop=15)
    clip = write_clip(source / "new.mp4", scene_shots([20, 21, 22]), gop=15)
    watcher = start_watcher(folder, store)
    try:
        shutil.copy(clip, folder / "new.mp4")
        wait_until(lambda: snapshot(store).get(str(folder / "new.mp4"), ("",))[0] == "ok", "the new clip indexed",
                   limit=60)
        (folder / "new.mp4").rename(folder / "renamed.mp4")
        wait_until(lambda: str(folder / "renamed.mp4") in snapshot(store), "the rename followed")
    finally:
        err = stop(watcher)
    assert f"moved {folder / 'new.mp4'} -> {folder / 'renamed.mp4'}" in err, err[-2000:]
    assert err.count("added ") == 1 and f"added {folder / 'new.mp4'}" in err, "the rename was no new clip"
    assert_same(snapshot(store), fresh_index(folder, tmp_path))
    assert_invariants(store)


def test_kill_9_in_the_middle_of_a_video_then_resume(tmp_path):
    folder, store = tmp_path / "library", tmp_path / "store"
    write_scenes(folder, range(3))
    for n in range(3):
        write_clip(folder / f"clip{n}.mp4", scene_shots([30 + 2 * n, 31 + 2 * n]), gop=15)
    # embed:3 is the second video's frames (the photos are the first batch): killed mid-video; then commits
    for point in ("embed:3", "before_commit:3", "after_commit:2"):
        result = run_cli("index", folder, "--store", store, "--weights", "random", env={"VITSEARCH_FAULT": point})
        assert result.returncode == -signal.SIGKILL, (point, result.stderr[-2000:])
        assert_invariants(store)
    result = run_cli("index", folder, "--store", store, "--weights", "random")
    assert result.returncode == 0, result.stderr[-2000:]
    assert_invariants(store)
    assert_same(snapshot(store), fresh_index(folder, tmp_path))
