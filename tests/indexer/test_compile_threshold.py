"""The compiled graph's build threshold counts images that go through the model, not files read."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import FakeEncoder
from tests.search.test_search import write_varied_images
from vitsearch.indexer import build_index
from vitsearch.indexer.model import compiled


class DecidingEncoder(FakeEncoder):
    """Records what indexer.model.compiled decides each time a run asks, as a CPU bf16 run in auto mode
    with no graph cached; nothing is built."""

    def __init__(self, cached: bool = False):
        super().__init__()
        self.cached = cached
        self.decisions: list[tuple[int, bool]] = []

    def prepare_graph(self, images: int, batch_size: int) -> None:
        self.decisions.append((images, compiled.should_compile(
            "auto", device="cpu", precision="bf16", images=images, batch_size=batch_size, cached=self.cached)))

    def builds(self) -> bool:
        built = any(decided for _, decided in self.decisions)
        self.decisions.clear()
        return built


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(compiled, "COMPILE_MIN_IMAGES", 40)
    monkeypatch.setattr(compiled, "has_cpp_compiler", lambda: True)
    return 40


def test_copies_do_not_count_towards_building_the_graph(tmp_path, small_threshold):
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_varied_images(photos / "first", small_threshold + 10)
    encoder = DecidingEncoder()
    build_index([photos], store, encoder=encoder, batch_size=8)
    assert encoder.builds(), "a run that embeds enough new images builds the graph"

    shutil.copytree(photos / "first", photos / "copies")  # as many files again, all known content
    report = build_index([photos], store, encoder=encoder, batch_size=8)
    assert report.added == small_threshold + 10 and report.embedded == 0
    assert not encoder.builds(), encoder.decisions

    write_varied_images(photos / "second", small_threshold, seed=7)  # new content, as many as needed
    report = build_index([photos], store, encoder=encoder, batch_size=8)
    assert report.embedded == small_threshold
    assert encoder.builds()


def test_a_run_of_fewer_new_images_than_the_threshold_never_builds(tmp_path, small_threshold):
    photos = tmp_path / "photos"
    write_varied_images(photos, small_threshold - 1)
    encoder = DecidingEncoder()
    build_index([photos], tmp_path / "store", encoder=encoder, batch_size=8)
    assert not encoder.builds()


def test_a_cached_graph_is_still_loaded_before_the_first_batch(tmp_path, small_threshold):
    photos = tmp_path / "photos"
    write_varied_images(photos, 10)
    encoder = DecidingEncoder(cached=True)
    build_index([photos], tmp_path / "store", encoder=encoder, batch_size=8)
    assert encoder.decisions[0] == (10, True), "asked before reading, with the files it may embed"
