"""The store and incremental sync, on real DuckDB files and FAISS indexes (fake encoder)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tests.conftest import FakeEncoder, write_scenes
from vitsearch.indexer import StoreInUseError, StoreMismatchError, build_index
from vitsearch.indexer.store.lock import WriterLock
from vitsearch.indexer.store.store import Store
from vitsearch.indexer.store.vectors import FAISS_NAME, open_vector_index
from vitsearch.search import ImageIndex, store_info


def stored(store_dir) -> dict[str, tuple]:
    """path -> (id, status, error, embedding) for every row."""
    with Store(store_dir).connect() as con:
        rows = con.execute("SELECT path, id, status, error, embedding FROM images").fetchall()
    return {r[0]: (r[1], r[2], r[3], None if r[4] is None else np.asarray(r[4])) for r in rows}


def assert_consistent(store_dir) -> None:
    """Invariant 1: FAISS ids are exactly the live rows with embeddings, vector for vector."""
    db = Store(store_dir)
    vectors = open_vector_index(db, db.manifest())
    live_ids, embeddings = db.embeddings()
    assert np.array_equal(vectors.ids(), live_ids)
    for row_id, embedding in zip(live_ids, embeddings, strict=False):
        assert np.allclose(vectors.index.reconstruct(int(row_id)), embedding)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    write_scenes(folder, range(6))
    return folder


def index(folder, store, encoder, **kw):
    return build_index([folder], store, encoder=encoder, batch_size=4, **kw)


def test_round_trip_keeps_ids_and_vectors(photos, tmp_path, fake_encoder):
    store = tmp_path / "store"
    report = index(photos, store, fake_encoder)
    assert (report.added, report.failed, report.embedded) == (6, 0, 6)
    before = stored(store)
    assert_consistent(store)
    reopened = ImageIndex.open(store, encoder=fake_encoder)
    assert len(reopened) == 6
    for row_id, _, _, embedding in before.values():
        assert reopened.search(embedding, k=1)[0].id == row_id
    assert stored(store).keys() == before.keys()


def test_progress_shows_the_work_ahead_before_the_model_runs(photos, tmp_path, fake_encoder):
    calls = []

    def progress(phase, done, total):
        assert phase == "index", "signatures are made as files are read: no second phase here"
        calls.append((done, total, fake_encoder.calls))

    index(photos, tmp_path / "store", fake_encoder, progress=progress)
    assert calls[0] == (0, 6, 0), "the bar starts with the total, before any batch is embedded"
    assert calls[-1][:2] == (6, 6)
    assert [done for done, _, _ in calls] == sorted(done for done, _, _ in calls)


def test_noop_reindex_embeds_nothing(photos, tmp_path, fake_encoder):
    store = tmp_path / "store"
    index(photos, store, fake_encoder)
    calls = fake_encoder.calls
    report = index(photos, store, fake_encoder)
    assert fake_encoder.calls == calls
    assert report.summary() | {"seconds": 0, "images_per_s": 0} == {
        "added": 0, "updated": 0, "unchanged": 6, "moved": 0, "removed": 0, "failed": 0,
        "seconds": 0, "images_per_s": 0,
    }


def test_modify_delete_rename_copy(photos, tmp_path, fake_encoder):
    store = tmp_path / "store"
    index(photos, store, fake_encoder)
    before = stored(store)
    modified, deleted, renamed, copied = (str(photos / f"scene-00{i}.jpg") for i in range(4))
    write_scenes(photos / "tmp", [99])
    os.replace(photos / "tmp" / "scene-099.jpg", modified)
    os.rmdir(photos / "tmp")
    os.remove(deleted)
    os.makedirs(photos / "sub")
    new_name = str(photos / "sub" / "renamed.jpg")
    os.rename(renamed, new_name)
    copy_name = str(photos / "copy.jpg")
    shutil.copy(copied, copy_name)
    touched = str(photos / "scene-004.jpg")
    os.utime(touched, ns=(1, 1))

    calls = fake_encoder.calls
    report = index(photos, store, fake_encoder)
    after = stored(store)

    assert (report.added, report.updated, report.moved, report.removed, report.failed) == (1, 1, 1, 1, 0)
    assert report.unchanged == 3  # touched, copied's source, scene-005
    assert fake_encoder.calls - calls == 1, "only the modified file goes through the model"
    assert deleted not in after and renamed not in after
    assert after[new_name][0] == before[renamed][0], "a renamed file keeps its id"
    assert np.array_equal(after[new_name][3], before[renamed][3]), "and its embedding"
    assert np.array_equal(after[copy_name][3], before[copied][3])
    assert after[copy_name][0] != before[copied][0]
    assert not np.allclose(after[modified][3], before[modified][3])
    assert_consistent(store)
    hits = ImageIndex.open(store, encoder=fake_encoder).search(after[copied][3], k=2)
    assert {h.path for h in hits} == {copied, copy_name}


def test_swap_by_rename_over_existing_file(photos, tmp_path, fake_encoder):
    store = tmp_path / "store"
    index(photos, store, fake_encoder)
    before = stored(store)
    a, b = str(photos / "scene-000.jpg"), str(photos / "scene-001.jpg")
    os.replace(b, a)  # b's content now lives at a; b is gone
    report = index(photos, store, fake_encoder)
    after = stored(store)
    assert b not in after
    assert np.array_equal(after[a][3], before[b][3])
    assert report.moved == 1
    assert_consistent(store)


def test_hostile_files_are_recorded_and_absent_from_faiss(photos, tmp_path, fake_encoder):
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.png").write_text("not an image")
    good = (photos / "scene-000.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(good[: len(good) // 2])
    store = tmp_path / "store"
    report = index(photos, store, fake_encoder)
    assert report.failed == 3 and report.added == 6
    assert {f.reason for f in report.failures} == {"empty", "unidentified", "truncated"}
    info = store_info(store)
    assert info["images"] == info["vectors"] == 6
    assert info["failed"] == 3 and sum(info["failures"].values()) == 3
    assert_consistent(store)
    again = index(photos, store, fake_encoder)
    assert again.failed == 0 and again.unchanged == 9, "known-bad files are not retried unchanged"


def test_one_bad_image_in_a_batch_keeps_neighbours_right(photos, tmp_path, fake_encoder, monkeypatch):
    original = fake_encoder.preprocess
    target = (photos / "scene-002.jpg").read_bytes()

    def preprocess(image):
        vector = original(image)
        if np.allclose(vector, original(_decode(target))):
            raise RuntimeError("boom inside preprocessing")
        return vector

    monkeypatch.setattr(fake_encoder, "preprocess", preprocess)
    store = tmp_path / "store"
    report = index(photos, store, fake_encoder)
    assert report.failed == 1 and report.failures[0].path.endswith("scene-002.jpg")
    searcher = ImageIndex.open(store, encoder=FakeEncoder())
    for path in sorted(photos.glob("*.jpg")):
        if path.name != "scene-002.jpg":
            assert searcher.search(str(path), k=1)[0].path == str(path)


def _decode(data: bytes):
    from vitsearch.indexer.imaging.images import load_image

    return load_image(data, draft_size=64).image


def test_nan_embedding_is_rejected(photos, tmp_path, fake_encoder, monkeypatch):
    original = fake_encoder.encode
    batches = []

    def encode(batch):
        vectors = original(batch)
        vectors[0] = np.nan
        batches.append(len(batch))
        return vectors

    monkeypatch.setattr(fake_encoder, "encode", encode)
    store = tmp_path / "store"
    report = index(photos, store, fake_encoder)
    assert {f.reason for f in report.failures} == {"bad_embedding"}
    assert report.failed == len(batches) and report.added == 6 - len(batches)  # the first of each batch
    assert_consistent(store)


def test_file_vanishing_between_scan_and_read_is_picked_up_next_run(photos, tmp_path, fake_encoder, monkeypatch):
    import vitsearch.indexer.ingest as run
    from vitsearch.indexer.errors import ImageLoadError

    real_read = run.read_image_bytes

    def flaky(path):
        if path.endswith("scene-003.jpg"):
            raise ImageLoadError("vanished", "file disappeared before it was read")
        return real_read(path)

    monkeypatch.setattr(run, "read_image_bytes", flaky)
    store = tmp_path / "store"
    assert index(photos, store, fake_encoder).failed == 1
    monkeypatch.setattr(run, "read_image_bytes", real_read)
    report = index(photos, store, fake_encoder)
    assert report.updated == 1 and report.failed == 0
    assert stored(store)[str(photos / "scene-003.jpg")][1] == "ok"


@pytest.mark.parametrize("damage", ["delete", "truncate", "corrupt", "garbage", "older-copy"])
def test_damaged_faiss_file_is_rebuilt_from_duckdb(photos, tmp_path, fake_encoder, damage):
    store = tmp_path / "store"
    index(photos, store, fake_encoder)
    faiss_file = store / FAISS_NAME
    old = faiss_file.read_bytes()
    write_scenes(photos, range(6, 9))
    index(photos, store, fake_encoder)
    data = faiss_file.read_bytes()
    if damage == "delete":
        faiss_file.unlink()
    elif damage == "truncate":
        faiss_file.write_bytes(data[: len(data) // 2])
    elif damage == "corrupt":
        faiss_file.write_bytes(data[:-100] + bytes(100))
    elif damage == "garbage":
        faiss_file.write_bytes(b"\x00" * 5000)
    else:
        faiss_file.write_bytes(old)
    searcher = ImageIndex.open(store, encoder=fake_encoder)
    assert len(searcher) == 9, "never served empty in silence"
    assert searcher.vectors.repair
    assert store_info(store)["vectors"] == 9
    report = index(photos, store, fake_encoder)
    assert report.repair and report.unchanged == 9
    assert_consistent(store)
    assert ImageIndex.open(store, encoder=fake_encoder).vectors.repair is None


def test_failed_faiss_write_keeps_old_file_and_is_caught_up(photos, tmp_path, fake_encoder, monkeypatch):
    """A disk-full during the FAISS save: loud error, old file intact, next open catches up."""
    import vitsearch.indexer.store.vectors as vectors_module

    store = tmp_path / "store"
    index(photos, store, fake_encoder)
    saved = (store / FAISS_NAME).read_bytes()
    write_scenes(photos, range(6, 8))
    os.remove(photos / "scene-000.jpg")

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vectors_module, "save_vector_index", disk_full)
    with pytest.raises(OSError, match="No space"):
        index(photos, store, fake_encoder)
    assert (store / FAISS_NAME).read_bytes() == saved
    db = Store(store)
    vectors = open_vector_index(db, db.manifest())
    assert vectors.repair.startswith("caught up")
    assert np.array_equal(vectors.ids(), db.live_ids()) and vectors.count == 7
    monkeypatch.undo()
    report = index(photos, store, fake_encoder)
    assert report.unchanged == 7 and report.repair.startswith("caught up")
    assert_consistent(store)


def test_other_model_or_weights_is_refused(photos, tmp_path, fake_encoder):
    store = tmp_path / "store"
    index(photos, store, fake_encoder)
    with pytest.raises(StoreMismatchError, match="different weights"):
        index(photos, store, FakeEncoder(salt="other"))
    other_model = FakeEncoder()
    other_model.model_name = "another-model"
    with pytest.raises(StoreMismatchError, match="model_name.*new store"):
        index(photos, store, other_model)


def test_second_writer_is_told_who_holds_the_store(photos, tmp_path, fake_encoder):
    store = tmp_path / "store"
    index(photos, store, fake_encoder)
    with WriterLock(store / "writer.lock"):
        with pytest.raises(StoreInUseError) as caught:
            index(photos, store, fake_encoder)
        assert caught.value.pid == os.getpid()
        assert f"process {os.getpid()}" in str(caught.value)
        reader = ImageIndex.open(store, encoder=fake_encoder)  # readers keep working
        assert len(reader.search(str(photos / "scene-001.jpg"), k=3)) == 3
    index(photos, store, fake_encoder)  # released: writable again


def test_leftover_temporary_files_are_cleaned(photos, tmp_path, fake_encoder):
    store = tmp_path / "store"
    index(photos, store, fake_encoder)
    leftover = store / f"{FAISS_NAME}.tmp-12345"
    leftover.write_bytes(b"half a save")
    index(photos, store, fake_encoder)
    assert not leftover.exists()


def test_awkward_names_are_stored_and_found(tmp_path, fake_encoder):
    folder = tmp_path / "weird"
    paths = write_scenes(folder, range(3))
    names = ["quote'\"s.jpg", "semi;colon; DROP TABLE images;.jpg", "new\nline.jpg"]
    for path, name in zip(paths, names, strict=False):
        os.rename(path, folder / name)
    raw = os.path.join(os.fsencode(folder), b"latin1-\xe9.jpg")
    write_scenes(tmp_path / "x", [7])
    os.rename(tmp_path / "x" / "scene-007.jpg", raw)
    store = tmp_path / "store"
    report = index(folder, store, fake_encoder)
    assert report.added == 4 and report.failed == 0
    assert index(folder, store, fake_encoder).unchanged == 4
    hits = ImageIndex.open(store, encoder=fake_encoder).search(str(folder / names[1]), k=1)
    assert hits[0].path == str(folder / names[1]) and not hits[0].stale


def test_a_non_utf8_name_and_its_escaped_spelling_are_two_files(tmp_path, fake_encoder):
    """b'a\\xff.jpg' (not UTF-8) and the UTF-8 name 'a\\\\xff.jpg' must not share a key: once they
    did, and one was never indexed while the other was re-embedded on every run."""
    folder = tmp_path / "names"
    write_scenes(tmp_path / "x", [1, 2])
    folder.mkdir()
    os.rename(tmp_path / "x" / "scene-001.jpg", os.path.join(os.fsencode(folder), b"a\xff.jpg"))
    os.rename(tmp_path / "x" / "scene-002.jpg", folder / "a\\xff.jpg")
    store = tmp_path / "store"
    assert index(folder, store, fake_encoder).added == 2
    again = index(folder, store, fake_encoder)
    assert again.unchanged == 2 and again.embedded == 0 and again.updated == 0
    assert len(stored(store)) == 2
    assert_consistent(store)


def test_buffered_inserts_keep_write_order_and_values(tmp_path):
    """New rows are inserted in bulk at the end of a transaction: every value must round-trip,
    and a write that refers to a buffered row (copy, delete) must see it."""
    from datetime import datetime

    from vitsearch.indexer.imaging.images import ImageInfo

    store = Store(tmp_path / "store", read_only=False)
    store.dir.mkdir()
    store.initialize({"model_name": "m", "model_tag": "", "preprocess": {}, "dim": 4, "metric": "cosine",
                      "weights_source": "test", "weights_fingerprint": "f"})
    vector = np.array([0.1, -0.2, 0.3, 1e-8], np.float32)
    info = ImageInfo(640, 480, "JPEG", datetime(2021, 5, 6, 7, 8, 9), "Camera X", ("note",))
    with store.transaction() as tx:
        first = tx.write_image(None, "/p/a.jpg", "/p", 10, 11, "h1", info, vector)
        odd = tx.write_image(None, "/p/b\udcff.jpg", "/p", 12, 13, "h2", info, vector * 2)
        failed = tx.write_failure(None, "/p/c.jpg", "/p", 14, 15, None, "corrupt", "bad")
        copied = tx.copy(first, None, "/p/d.jpg", "/p", 10, 16)
        gone = tx.write_image(None, "/p/e.jpg", "/p", 17, 18, "h3", info, vector)
        tx.delete([gone])
    with store.connect() as con:
        rows = {r[0]: r[1:] for r in con.execute(
            "SELECT id, path, path_bytes, width, captured_at, camera, warnings, status, error, embedding "
            "FROM images").fetchall()}
        logged = {r[0] for r in con.execute("SELECT id FROM vector_log").fetchall()}
    assert set(rows) == {first, odd, failed, copied} and logged == {first, odd, failed, copied, gone}
    assert rows[first][2:7] == (640, datetime(2021, 5, 6, 7, 8, 9), "Camera X", "note", "ok")
    assert np.array_equal(np.asarray(rows[first][8], np.float32), vector)
    assert np.array_equal(np.asarray(rows[copied][8], np.float32), vector)
    assert np.array_equal(np.asarray(rows[odd][8], np.float32), vector * 2)
    assert rows[odd][1] == os.fsencode("/p/b\udcff.jpg")
    assert rows[failed][6:9] == ("failed", "corrupt", None)


@pytest.mark.e2e  # the real CLI or model in child processes
@pytest.mark.slow  # many short-lived processes
def test_exiting_as_a_read_lease_expires_never_aborts(tmp_path):
    """The lease closer runs in a daemon thread; a process that exits while it is inside DuckDB's
    close used to abort (exit 134, "terminate called ... exception not rethrown"): about one
    exit in five within a few ms of expiry. Exits are spread across that window."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from vitsearch.indexer.store.connections import LEASE_SECONDS

    store = Store(tmp_path / "store", read_only=False)
    store.dir.mkdir()
    store.initialize({"model_name": "m", "model_tag": "", "preprocess": {}, "dim": 4, "metric": "cosine",
                      "weights_source": "test", "weights_fingerprint": "f"})
    code = (
        "import sys, time\nfrom vitsearch.indexer.store.store import Store\n"
        "with Store(sys.argv[1]).connect() as con:\n    con.execute('SELECT count(*) FROM images').fetchall()\n"
        "time.sleep(float(sys.argv[2]))\n"
    )
    codes = []
    for step in range(16):
        pause = LEASE_SECONDS - 0.006 + step * 0.0008
        result = subprocess.run([sys.executable, "-c", code, str(store.dir), str(pause)], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        codes.append((round(pause, 4), result.returncode, result.stderr[-200:]))
    assert all(rc == 0 for _, rc, _ in codes), [c for c in codes if c[1]]


def test_a_writer_reuses_its_connection_briefly_and_drops_it_after_a_failed_write(tmp_path, monkeypatch):
    """Back-to-back writes share one read-write connection (a one-photo run made 17 opens of
    ~20 ms); a failed transaction drops it; and it is let go soon enough that another process's
    writer, kept out meanwhile, gets in."""
    import subprocess
    import sys
    import time

    from tests.conftest import REPO
    from vitsearch.indexer.store import connections

    opens = []
    real_open = connections._open
    monkeypatch.setattr(connections, "_open", lambda path, **kw: opens.append(kw) or real_open(path, **kw))
    store = Store(tmp_path / "store", read_only=False)
    store.initialize({"model_name": "m", "model_tag": "", "preprocess": {}, "dim": 4, "metric": "cosine",
                      "weights_source": "test", "weights_fingerprint": "f"})
    store.set_manifest(first=1)
    assert store.manifest()["first"] == 1 and len(opens) == 1
    with pytest.raises(RuntimeError), store.transaction():
        raise RuntimeError("a write that fails halfway")
    store.set_manifest(second=2)
    assert len(opens) == 2, "the failed transaction's connection was not reused"
    code = ("import sys\nfrom vitsearch.indexer.store.store import Store\n"
            "Store(sys.argv[1], read_only=False).set_manifest(other=3)")
    store.set_manifest(third=3)  # holds the file as the other process starts
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code, str(store.dir)], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    time.sleep(connections.WRITER_LEASE_SECONDS)
    assert store.manifest()["other"] == 3 and store.manifest()["third"] == 3


def test_plan_reads_an_unreadable_unchanged_file_and_keeps_rows_of_an_unlisted_folder():
    from vitsearch.indexer.plan import plan_sync
    from vitsearch.indexer.scan import ScannedFile, UnreadableFolder
    from vitsearch.indexer.store.store import RowState

    def row(i, path, status="ok", error=None):
        return RowState(i, path, "/r", 10, 5, f"h{i}", status, error)

    rows = {r.path: r for r in [row(1, "/r/a.jpg"), row(2, "/r/b.jpg"), row(3, "/r/x/c.jpg"),
                                row(4, "/r/x/d.jpg", "failed", "unreadable"), row(5, "/r/gone.jpg")]}
    scanned = [ScannedFile("/r/a.jpg", "/r", 10, 5), ScannedFile("/r/b.jpg", "/r", 10, 5, readable=False)]
    folder = UnreadableFolder("/r/x", "cannot list folder: Permission denied")
    plan = plan_sync(scanned, rows, ["/r"], [folder])
    assert plan.unchanged == 1
    assert [(f.path, r.id) for f, r in plan.to_read] == [("/r/b.jpg", 2)]
    assert list(plan.missing) == [5], "only the file truly gone is removed"
    assert [(r.id, u) for r, u in plan.unlisted] == [(3, folder)], "kept; the row already failed is left as is"
