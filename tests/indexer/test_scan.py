"""Scanning: several roots, hidden folders, excludes, symlink loops and escapes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vitsearch.indexer.errors import ConfigError
from vitsearch.indexer.scan import normalize_roots, scan_folders


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(files) -> list[str]:
    return sorted(os.path.basename(f.path) for f in files)


def test_several_roots_recursive_and_image_extensions_only(tmp_path):
    touch(tmp_path / "a" / "one.jpg")
    touch(tmp_path / "a" / "deep" / "er" / "two.PNG")
    touch(tmp_path / "a" / "notes.txt")
    touch(tmp_path / "a" / "page.html")
    touch(tmp_path / "a" / "logo.svg")
    touch(tmp_path / "b" / "three.webp")
    found = list(scan_folders([tmp_path / "a", tmp_path / "b"]))
    assert names(found) == ["one.jpg", "three.webp", "two.PNG"]
    assert {f.root for f in found} == {str(tmp_path / "a"), str(tmp_path / "b")}
    assert all(os.path.isabs(f.path) for f in found)


def test_hidden_skipped_by_default(tmp_path):
    touch(tmp_path / ".cache" / "thumb.jpg")
    touch(tmp_path / ".hidden.jpg")
    touch(tmp_path / "shown.jpg")
    assert names(scan_folders([tmp_path])) == ["shown.jpg"]
    assert names(scan_folders([tmp_path], include_hidden=True)) == [".hidden.jpg", "shown.jpg", "thumb.jpg"]


def test_exclude_globs_match_names_and_relative_paths(tmp_path):
    touch(tmp_path / "keep" / "a.jpg")
    touch(tmp_path / "raw" / "b.jpg")
    touch(tmp_path / "keep" / "c.png")
    assert names(scan_folders([tmp_path], exclude=["raw"])) == ["a.jpg", "c.png"]
    assert names(scan_folders([tmp_path], exclude=["*.png"])) == ["a.jpg", "b.jpg"]
    assert names(scan_folders([tmp_path], exclude=["keep/*"])) == ["b.jpg"]


def test_symlink_loops_terminate(tmp_path):
    touch(tmp_path / "photos" / "a.jpg")
    os.symlink(tmp_path / "photos", tmp_path / "photos" / "loop")
    os.symlink(tmp_path, tmp_path / "photos" / "up")
    found = list(scan_folders([tmp_path]))
    assert names(found) == ["a.jpg"]


def test_nothing_outside_the_roots(tmp_path):
    touch(tmp_path / "outside" / "secret.jpg")
    touch(tmp_path / "root" / "mine.jpg")
    os.symlink(tmp_path / "outside", tmp_path / "root" / "escape")
    os.symlink(tmp_path / "outside" / "secret.jpg", tmp_path / "root" / "link.jpg")
    found = list(scan_folders([tmp_path / "root"]))
    assert names(found) == ["mine.jpg"]


def test_nested_roots_are_scanned_once(tmp_path):
    touch(tmp_path / "a" / "b" / "x.jpg")
    assert normalize_roots([tmp_path / "a", tmp_path / "a" / "b"]) == [str(tmp_path / "a")]
    assert len(list(scan_folders([tmp_path / "a", tmp_path / "a" / "b"]))) == 1


def test_missing_root_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        list(scan_folders([tmp_path / "nope"]))


def test_awkward_file_names_are_found(tmp_path):
    weird = ["quote'\"s.jpg", "semi;colon.jpg", "new\nline.jpg", "<script>.jpg"]
    for name in weird:
        touch(tmp_path / name)
    touch(Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"latin1-\xe9.jpg"))))
    assert len(list(scan_folders([tmp_path]))) == len(weird) + 1


def test_a_folder_that_cannot_be_listed_is_reported_and_an_unreadable_file_flagged(tmp_path):
    import json
    import subprocess
    import sys

    from tests.indexer.unprivileged import REPO, child_options

    touch(tmp_path / "open.jpg")
    os.chmod(touch(tmp_path / "closed.jpg"), 0)
    touch(tmp_path / "locked" / "inside.jpg")
    os.chmod(tmp_path / "locked", 0)
    code = ("import json, sys; from vitsearch.indexer.scan import scan_folders; u = []; "
            "f = {x.path: x.readable for x in scan_folders([sys.argv[1]], unreadable=u)}; "
            "print(json.dumps([f, [[x.path, x.detail] for x in u]]))")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                              timeout=60, **child_options())
    finally:
        os.chmod(tmp_path / "locked", 0o755)
    assert done.returncode == 0, done.stderr[-2000:]
    files, unreadable = json.loads(done.stdout)
    assert files == {str(tmp_path / "closed.jpg"): False, str(tmp_path / "open.jpg"): True}
    assert unreadable == [[str(tmp_path / "locked"), "cannot list folder: Permission denied"]]
