"""Quarantine: a dry-run plan, moves recorded in a manifest first, and a full undo."""

from __future__ import annotations

import json

from vitsearch.ui.filters import build_where
from vitsearch.ui.quarantine import apply_quarantine, latest_manifest, plan_quarantine, undo_quarantine


def test_quarantine_moves_others_and_undo_restores(tmp_path):
    files = []
    for name in ("keep.jpg", "copy1.jpg", "copy2.jpg"):
        path = tmp_path / "photos" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(name.encode())
        files.append(str(path))
    folder = tmp_path / "store" / ".quarantine"
    moves = plan_quarantine(files, files[0], folder)
    assert [m.source for m in moves] == files[1:]
    assert all((tmp_path / "photos" / n).exists() for n in ("copy1.jpg", "copy2.jpg")), "a dry run moves nothing"
    manifest = apply_quarantine(moves, folder)
    assert json.loads(manifest.read_text())[0]["source"] == files[1]
    assert not (tmp_path / "photos" / "copy1.jpg").exists() and (tmp_path / "photos" / "keep.jpg").exists()
    assert all(open(m.target, "rb").read() for m in moves)
    assert latest_manifest(folder) == manifest
    assert undo_quarantine(manifest) == 2
    assert (tmp_path / "photos" / "copy2.jpg").read_bytes() == b"copy2.jpg"
    assert latest_manifest(folder) is None


def test_filter_fields_become_quoted_sql():
    where = build_where("/photos/o'neil", "2023-01-01", "2023-12-31", 1024, None, ["JPEG", "EVIL'); --"])
    assert "starts_with(path, '/photos/o''neil')" in where
    assert "TIMESTAMP '2023-12-31 23:59:59'" in where
    assert "width >= 1024" in where and "format IN ('JPEG')" in where
    assert build_where() is None
