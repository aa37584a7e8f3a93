"""Videos indexed beside photos: their facts, frames and one embedding each; renames and copies
followed without decoding; frames embedded exactly as the reference pipeline embeds a still."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import write_scenes
from tests.videos import frame_at, scene_shots, write_clip
from vitsearch.indexer import video_ingest
from vitsearch.indexer.build import build_index
from vitsearch.indexer.imaging.video import read_video, video_vector
from vitsearch.indexer.store.store import Store
from vitsearch.search import store_info


def frames_of(store, path) -> tuple[list[float], np.ndarray]:
    with Store(store).connect() as con:
        rows = con.execute("SELECT t, embedding FROM frames WHERE video_id = (SELECT id FROM images WHERE path = ?) "
                           "ORDER BY t", [str(path)]).fetchall()
    return [t for t, _ in rows], np.asarray([e for _, e in rows], np.float32)


def row_of(store, path) -> dict:
    with Store(store).connect() as con:
        cursor = con.execute("SELECT * FROM images WHERE path = ?", [str(path)])
        names = [d[0] for d in cursor.description]
        found = cursor.fetchone()
    return dict(zip(names, found, strict=True)) if found else None


@pytest.fixture
def library(tmp_path):
    folder = tmp_path / "library"
    write_scenes(folder, range(3))
    write_clip(folder / "trip.mp4", scene_shots([10, 11, 12]), gop=15)
    write_clip(folder / "clips" / "walk.mkv", scene_shots([20, 21]), size=(240, 180))
    # A Live Photo: the .mov beside its still belongs to the still
    write_scenes(folder, [30])
    shutil.move(folder / "scene-030.jpg", folder / "IMG_0001.JPG")
    write_clip(folder / "IMG_0001.MOV", scene_shots([30], seconds=1.5))
    return folder


def decodes(monkeypatch) -> list[str]:
    """The videos the run decodes (read_video, instrumented: it still runs)."""
    calls = []
    real = video_ingest.read_video

    def counting(path, **options):
        calls.append(path)
        return real(path, **options)

    monkeypatch.setattr(video_ingest, "read_video", counting)
    return calls


def test_videos_are_indexed_beside_photos(library, tmp_path, fake_encoder):
    store = tmp_path / "store"
    report = build_index([library], store, encoder=fake_encoder)
    assert report.failed == 0 and report.embedded_videos == 2
    info = store_info(store)
    assert (info["images"], info["videos"]) == (4, 2), "the Live Photo's .mov is no video of its own"
    assert info["vectors"] == 6 and info["frames"] == report.frames > 2
    trip = row_of(store, library / "trip.mp4")
    assert trip["kind"] == "video" and (trip["width"], trip["height"]) == (320, 240)
    assert trip["duration"] == pytest.approx(9.0, abs=0.2) and trip["fps"] == pytest.approx(15)
    assert trip["codec"] == "h264" and trip["bitrate"] > 0 and trip["format"] == "MP4"
    times, vectors = frames_of(store, library / "trip.mp4")
    assert len(times) >= 4 and times == sorted(times) and 0 <= times[0] and times[-1] < 9.0
    assert np.allclose(trip["embedding"], video_vector(vectors), atol=1e-6), "the video is its frames' mean"
    assert row_of(store, library / "scene-000.jpg")["kind"] == "image"


def test_renames_and_copies_are_followed_without_decoding(library, tmp_path, fake_encoder, monkeypatch):
    store = tmp_path / "store"
    build_index([library], store, encoder=fake_encoder)
    before = row_of(store, library / "trip.mp4")
    frames_before = frames_of(store, library / "trip.mp4")
    decoded = decodes(monkeypatch)
    (library / "trip.mp4").rename(library / "clips" / "moved.mp4")
    shutil.copy(library / "clips" / "walk.mkv", library / "walk copy.mkv")
    report = build_index([library], store, encoder=fake_encoder)
    assert decoded == [] and (report.moved, report.added) == (1, 1)
    moved = row_of(store, library / "clips" / "moved.mp4")
    assert moved["id"] == before["id"] and row_of(store, library / "trip.mp4") is None
    assert frames_of(store, library / "clips" / "moved.mp4")[0] == frames_before[0]
    assert frames_of(store, library / "walk copy.mkv")[0] == frames_of(store, library / "clips" / "walk.mkv")[0]
    copied, original = row_of(store, library / "walk copy.mkv"), row_of(store, library / "clips" / "walk.mkv")
    assert (copied["duration"], copied["codec"]) == (original["duration"], original["codec"])
    # unchanged: nothing read again; a changed video is decoded once; a deleted one leaves with its frames
    assert build_index([library], store, encoder=fake_encoder).unchanged == 7 and decoded == []
    write_clip(library / "clips" / "walk.mkv", scene_shots([40, 41]))
    (library / "walk copy.mkv").unlink()
    report = build_index([library], store, encoder=fake_encoder)
    assert decoded == [str(library / "clips" / "walk.mkv")] and (report.updated, report.removed) == (1, 1)
    with Store(store).connect() as con:
        orphans = con.execute("SELECT count(*) FROM frames WHERE video_id NOT IN (SELECT id FROM images)").fetchone()
    assert orphans[0] == 0
    assert store_info(store)["videos"] == 2


def test_a_clip_with_keyframes_far_apart_is_still_sampled_every_few_seconds(tmp_path):
    """x264's default places keyframes only at cuts: 3 s shots get frames between them too."""
    clip = write_clip(tmp_path / "long-gop.mp4", scene_shots([1, 2, 3, 4], seconds=6.0), gop=300)
    sample = read_video(str(clip), min_side=None)
    assert len(sample.times) >= 8, sample.times
    assert max(np.diff([0.0, *sample.times, 24.0])) <= 4.5, sample.times


def test_black_and_flat_frames_are_left_out(tmp_path):
    clip = write_clip(tmp_path / "intro.mp4", [*scene_shots([None], seconds=4.0), *scene_shots([5, 6])], gop=15)
    sample = read_video(str(clip), min_side=None)
    assert sample.left_out >= 1 and min(sample.times) >= 3.9, sample.times


def reference_embedding(model, image: Image.Image) -> np.ndarray:
    """timm's own pipeline on a still: its eval transform, forward_features, forward_head(pre_logits)."""
    import timm

    from vitsearch.indexer.model.weights import MODEL_NAME

    # the config of timm's own model of that name: the encoder's model may come from the model
    # cache as a plain ViT, whose config timm no longer knows (it would resolve 224 px)
    config = timm.data.resolve_model_data_config(timm.create_model(MODEL_NAME, pretrained=False, num_classes=0))
    transform = timm.data.create_transform(**config, is_training=False)
    with torch.no_grad():
        vector = model.forward_head(model.forward_features(transform(image).unsqueeze(0)), pre_logits=True)[0]
    vector = vector.numpy()
    return vector / np.linalg.norm(vector)


@pytest.mark.parametrize("exact", [True, False])
def test_frames_embed_as_the_reference_pipeline_embeds_the_still(tmp_path, random_encoder, exact):
    """The quality contract for videos: a stored frame's embedding equals timm's on that frame decoded
    in full (cosine >= 0.9999 exact, >= 0.999 by default, where frames are scaled down first)."""
    from vitsearch.indexer.model.encoder import load_encoder

    encoder = random_encoder if exact else load_encoder("random", device="cpu")
    folder = tmp_path / "clips"
    clip = write_clip(folder / "hd.mp4", scene_shots([7, 8], seconds=2.0), size=(1280, 720), gop=10)
    store = tmp_path / "store"
    build_index([folder], store, encoder=encoder)
    times, vectors = frames_of(store, clip)
    assert len(times) >= 2
    worst = min(float(reference_embedding(random_encoder.model, frame_at(clip, t)) @ v)
                for t, v in zip(times, vectors, strict=True))
    print(f"exact={exact}: worst frame cosine vs timm {worst:.6f}")
    assert worst >= (0.9999 if exact else 0.999), worst


def test_a_rotated_phone_clip_is_sampled_upright(tmp_path):
    import av

    clip = write_clip(tmp_path / "portrait.mp4", scene_shots([3], seconds=2.0), gop=10)
    upright = frame_at(clip, 0.0)
    rotated = tmp_path / "rotated.mp4"
    with av.open(str(clip)) as source, av.open(str(rotated), "w") as out:  # the same stream, displayed turned
        stream = out.add_stream_from_template(source.streams.video[0])
        stream.set_display_rotation(-90)  # what a phone held upright writes: shown turned 90 degrees clockwise
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    sample = read_video(str(rotated), min_side=None)
    assert (sample.info.width, sample.info.height) == (upright.height, upright.width)
    stored = frame_at(clip, sample.times[0])
    shown = np.asarray(sample.images[0], np.float32)
    clockwise, counter = (np.abs(shown - np.asarray(stored.transpose(t), np.float32)).mean()
                          for t in (Image.Transpose.ROTATE_270, Image.Transpose.ROTATE_90))
    assert clockwise < 3.0 < counter, (clockwise, counter)
