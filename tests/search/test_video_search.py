"""Searching a library of photos and videos with the real architecture: a still finds the clip
that holds it and the moment; a photo's own look-alikes stay above any video; kind filters;
a video as the query finds its copies."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli, scene_bytes
from tests.videos import frame_at, scene_shots, write_clip
from vitsearch.indexer.build import build_index
from vitsearch.search import ImageIndex

CLIPS = 10


def clip_seeds(n: int) -> list[int]:
    return [100 + 4 * n + shot for shot in range(4)]


@pytest.fixture(scope="module")
def library(tmp_path_factory, random_encoder):
    folder = tmp_path_factory.mktemp("mixed") / "library"
    for n in range(CLIPS):  # phone-like keyframes every second, or x264's default (keyframes at cuts only)
        write_clip(folder / f"clip{n:02d}.mp4", scene_shots(clip_seeds(n)), gop=15 if n % 2 else None)
    write_clip(folder / "small" / "clip00-small.mp4", scene_shots(clip_seeds(0)), size=(192, 144), crf=32)
    folder.joinpath("photo.jpg").write_bytes(scene_bytes(50, size=(480, 360), quality=95))
    folder.joinpath("photo-resaved.jpg").write_bytes(scene_bytes(50, size=(480, 360), quality=60))
    for seed in (51, 52):
        folder.joinpath(f"other{seed}.jpg").write_bytes(scene_bytes(seed, size=(480, 360)))
    store = folder.parent / "store"
    report = build_index([folder], store, encoder=random_encoder)
    assert report.failed == 0
    return folder, store


@pytest.fixture(scope="module")
def index(library, random_encoder):
    return ImageIndex.open(library[1], encoder=random_encoder)


@pytest.mark.parametrize("n", [3, 4])
def test_a_still_from_second_seven_finds_its_clip_and_the_moment(library, index, tmp_path, n):
    folder, _ = library
    still = tmp_path / "still.png"
    frame_at(folder / f"clip{n:02d}.mp4", 7.0).save(still)
    hits = index.search(str(still), k=5)
    assert hits[0].path == str(folder / f"clip{n:02d}.mp4") and hits[0].kind == "video"
    assert abs(hits[0].time - 7.0) <= 1.5, hits[0].time
    print(f"clip{n:02d}: {hits[0].score:.4f} @ {hits[0].time:.1f} s; next {hits[1].path} {hits[1].score:.4f}")


def test_a_photo_in_no_video_keeps_its_look_alikes_above_every_video(library, index):
    folder, _ = library
    hits = index.search(str(folder / "photo.jpg"), k=20)
    kinds = [h.kind for h in hits]
    assert [h.path for h in hits[:2]] == [str(folder / "photo.jpg"), str(folder / "photo-resaved.jpg")]
    assert "video" in kinds, "videos are still in the results, below"
    assert all(h.time is not None for h in hits if h.kind == "video")


def test_kind_filters_videos_and_photos(library, index):
    folder, _ = library
    videos = index.search(str(folder / "photo.jpg"), k=50, where="kind = 'video'")
    photos = index.search(str(folder / "photo.jpg"), k=50, where="kind = 'image'")
    assert len(videos) == CLIPS + 1 and {h.kind for h in videos} == {"video"}
    assert len(photos) == 4 and {h.kind for h in photos} == {"image"}
    short = index.search(str(folder / "photo.jpg"), k=50, where="kind = 'video' AND width < 300")
    assert [h.path for h in short] == [str(folder / "small" / "clip00-small.mp4")]


def test_a_video_as_the_query_finds_its_copies(library, index, tmp_path):
    folder, _ = library
    by_id = index.search(index.store.records("id", "path = ?", [str(folder / "clip00.mp4")])[0]["id"], k=3)
    assert [h.path for h in by_id[:2]] == [str(folder / "clip00.mp4"), str(folder / "small" / "clip00-small.mp4")]
    assert by_id[0].time is None, "a video query compares whole videos"
    outside = write_clip(tmp_path / "another encode.mkv", scene_shots(clip_seeds(0)), size=(256, 192), crf=28)
    hits = index.search(str(outside), k=3)
    assert {h.path for h in hits[:2]} == {str(folder / "clip00.mp4"), str(folder / "small" / "clip00-small.mp4")}


def test_the_command_line_names_the_moment(library, tmp_path):
    folder, store = library
    still = tmp_path / "still.png"
    frame_at(folder / "clip05.mp4", 7.0).save(still)
    text = run_cli("search", still, "--store", store, "-k", "3")
    assert text.returncode == 0, text.stderr
    first = text.stdout.splitlines()[0]
    assert first.split("\t")[1].startswith(f"{folder / 'clip05.mp4'} @ 00:0"), first
    as_json = run_cli("search", still, "--store", store, "-k", "3", "--json")
    hit = json.loads(as_json.stdout.splitlines()[0])
    assert hit["kind"] == "video" and abs(hit["time"] - 7.0) <= 1.5 and hit["duration"] == pytest.approx(12, abs=0.2)


def test_explain_and_a_region_refuse_a_video_by_name(library, index):
    from vitsearch.indexer.errors import ConfigError

    folder, _ = library
    video = index.store.records("id", "path = ?", [str(folder / "clip01.mp4")])[0]["id"]
    with pytest.raises(ConfigError, match="is a video"):
        index.explain(str(folder / "photo.jpg"), video)
    with pytest.raises(ConfigError, match="is a video"):
        index.search(video, box=(0, 0, 10, 10))


def test_describe_and_export_carry_the_video_facts(library, index, tmp_path):
    import pyarrow.parquet as pq

    from vitsearch.search.export import export_parquet

    folder, store = library
    video = index.store.records("id", "path = ?", [str(folder / "clip01.mp4")])[0]["id"]
    described = index.describe([video])[video]
    assert described["kind"] == "video" and described["codec"] == "h264" and described["duration"] > 11
    export_parquet(tmp_path / "out.parquet", store)
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert sorted({r["kind"] for r in table}) == ["image", "video"]
    assert all((r["duration"] is None) == (r["kind"] == "image") for r in table)

