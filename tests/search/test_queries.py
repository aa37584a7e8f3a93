"""The command line's query grammar: id:N, folders standing for their images, paths."""

from __future__ import annotations

import pytest

from vitsearch.indexer.errors import ConfigError
from vitsearch.search.queries import expand_queries, parse_query


def test_ids_and_paths():
    assert parse_query("id:42") == 42
    assert parse_query("photos/id:42.jpg") == "photos/id:42.jpg"
    with pytest.raises(ConfigError, match="not an id: 'id:x'"):
        parse_query("id:x")


def test_a_folder_stands_for_the_images_directly_inside_it(tmp_path):
    for name in ("b.JPG", "a.png", "notes.txt", "c.heic"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.jpg").mkdir()
    (tmp_path / "deeper").mkdir()
    (tmp_path / "deeper" / "d.jpg").write_bytes(b"")
    expanded = expand_queries([str(tmp_path), "id:3", "missing.jpg"])
    assert expanded == [str(tmp_path / n) for n in ("a.png", "b.JPG", "c.heic", "sub.jpg")] + ["id:3", "missing.jpg"]
    assert expand_queries([str(tmp_path / "deeper" / "d.jpg")]) == [str(tmp_path / "deeper" / "d.jpg")]
