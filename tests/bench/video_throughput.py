"""Benchmark: how fast videos index, where their time goes, and that photos index as fast as
without the video code path; one JSON line per figure.

    python tests/bench/video_throughput.py [--clips 6] [--workdir DIR] [--rounds 2] [--photos 48]
                                           [--part all|videos|photos]

Writes 1080p H.264 clips like a phone's (30 fps, High profile, a keyframe every second, no
B-frames, 20-30 s, ~12 Mbit/s: a pan over real photos, enlarged, with film grain, a cut every
6 s), and one 30 s clip with x264's default keyframe interval (keyint 250, keyframes at cuts,
B-frames), kept in --workdir for the next run (writing them takes minutes). Indexes them with the
real architecture (random weights, default precision) into fresh stores after a warm-up run, best
of --rounds: seconds of video indexed per second of wall time (the whole run and the videos
phase) and per CPU second over 2 cores (what the run used, whatever other work took), the phase's
split between hashing, sampling (keyframe seeks, forward decodes; the scaling and RGB conversion
of kept frames counted apart) and preprocessing, in the reading thread, and embedding, beside it;
frames kept and decoded. Then a folder of photos indexed with the video code path as shipped and
with it taken out (index_videos a no-op, no name a video's), alternating rounds: images/s and CPU
ms per image of each, and their ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import av
import numpy as np
from PIL import Image

from tests.conftest import sample_photo
from vitsearch.indexer import build as build_module
from vitsearch.indexer import build_index, plan, records, scan, video_ingest
from vitsearch.indexer.imaging import video
from vitsearch.indexer.model.encoder import load_encoder

SOURCES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
           "retina.jpg", "motorcycle_right.png", "color.png", "ihc.png")
SIZE = (1920, 1080)
FPS = 30
SHOT_S = 6
# A phone's H.264: a keyframe every second and no B-frames; the grain puts the bitrate near a
# phone's 1080p30 (12-17 Mbit/s)
PHONE = {"preset": "veryfast", "crf": "21", "x264-params": "keyint=30:min-keyint=30:scenecut=0:bframes=0"}
X264_DEFAULT = {"preset": "veryfast", "crf": "21"}


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def write_clip(path: Path, seconds: int, seed: int, options: dict) -> None:
    """A pan across enlarged photos, cut every SHOT_S, with fresh grain in every frame."""
    width, height = SIZE
    rng = np.random.default_rng(seed)
    grain = rng.normal(0, 3.5, (2 * height, 2 * width)).astype(np.int16)
    partial = path.with_suffix(".partial" + path.suffix)
    with av.open(str(partial), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt, stream.options = width, height, "yuv420p", options
        for shot in range(-(-seconds // SHOT_S)):
            y, u, v = panorama(SOURCES[(seed + shot) % len(SOURCES)], int(rng.integers(0, 4)))
            count = min(SHOT_S, seconds - shot * SHOT_S) * FPS
            for i in range(count):
                left = (y.shape[1] - width) * i // max(count - 1, 1)
                top = int(rng.integers(0, 8)) * 2  # a hand's shake
                noise = grain[rng.integers(0, height):, rng.integers(0, width):][:height, :width]
                luma = np.clip(y[top:top + height, left:left + width] + noise, 0, 255).astype(np.uint8)
                chroma = [c[top // 2:top // 2 + height // 2, left // 2:left // 2 + width // 2] for c in (u, v)]
                planes = np.concatenate([luma, *(c.reshape(height // 4, width) for c in chroma)])
                out.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")))
        out.mux(stream.encode())
    partial.rename(path)


def panorama(name: str, turn: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A photo enlarged to 1.4x the frame's width (room to pan), as Y (int16) and U, V planes."""
    photo = sample_photo(name).rotate(90 * turn, expand=True)
    width, height = SIZE
    scale = max(1.4 * width / photo.width, (height + 16) / photo.height)
    big = photo.resize((round(photo.width * scale) // 2 * 2, round(photo.height * scale) // 2 * 2),
                       Image.Resampling.BICUBIC)
    y, u, v = (np.asarray(plane) for plane in big.convert("YCbCr").split())
    half = (big.width // 2, big.height // 2)
    return (y.astype(np.int16), np.asarray(Image.fromarray(u).resize(half, Image.Resampling.BOX)),
            np.asarray(Image.fromarray(v).resize(half, Image.Resampling.BOX)))


def make_clips(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    plans = [(f"phone-{n}.mp4", 20 + n * 10 // max(count - 1, 1), PHONE) for n in range(count)]
    plans.append(("x264-default.mp4", 30, X264_DEFAULT))
    clips = []
    for seed, (name, seconds, options) in enumerate(plans):
        path = folder / name
        if not path.exists():
            started = time.perf_counter()
            write_clip(path, seconds, seed, options)
            print(f"wrote {name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        clips.append(path)
    return clips


class Timers:
    """Wall time and calls of the functions a video's indexing spends its time in, wrapped in place."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    @contextmanager
    def wrapped(self, targets: list[tuple[object, str, str]]):
        originals = [(owner, attribute, getattr(owner, attribute)) for owner, attribute, _ in targets]
        for (owner, attribute, name), (_, _, original) in zip(targets, originals, strict=True):
            setattr(owner, attribute, self._timed(name, original))
        try:
            yield self
        finally:
            for owner, attribute, original in originals:
                setattr(owner, attribute, original)

    def _timed(self, name, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                result = function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.counts[name] += 1
            if name == "forward" and result is not None:
                self.counts["forward_decoded"] += result[1]
            return result
        return timed


def video_targets() -> list[tuple[object, str, str]]:
    decoder = video._FrameDecoder
    return [(video_ingest, "hash_file", "hash"), (video_ingest, "read_video", "sample"),
            (video_ingest, "_sample", "sample_and_preprocess"), (video_ingest, "embed_tensors", "embed"),
            (video, "_keyframe_times", "keyframe_list"), (decoder, "_keyframe", "keyframe"),
            (decoder, "_forward_to", "forward"), (decoder, "_image", "scale_and_convert")]


def durations(clips: list[Path]) -> dict[str, float]:
    found = {}
    for clip in clips:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            found[clip.name] = float(stream.duration * stream.time_base)
    return found


def bench_videos(clips: list[Path], work: Path, encoder, rounds: int) -> None:
    folder = work / "videos"
    folder.mkdir(exist_ok=True)
    for clip in clips:
        (folder / clip.name).unlink(missing_ok=True)
        (folder / clip.name).hardlink_to(clip)
    seconds_of_video = sum(durations(clips).values())
    warm = work / "warm-videos"
    warm.mkdir(exist_ok=True)
    (warm / clips[0].name).unlink(missing_ok=True)
    (warm / clips[0].name).hardlink_to(clips[0])
    build_index([warm], work / "warm-store", encoder=encoder)  # precision check, caches, page cache
    best = None
    for round_ in range(rounds):
        timers = Timers()
        with timers.wrapped(video_targets()), cpu_time() as cpu:
            report = build_index([folder], work / f"videos-{round_}", encoder=encoder)
        if best is None or report.seconds < best[0].seconds:
            best = report, timers, cpu["s"]
    report, timers, cpu_s = best
    phase = report.video_seconds
    t = timers.seconds
    emit(figure="videos", clips=len(clips), seconds_of_video=round(seconds_of_video, 1),
         run_s=report.seconds, videos_phase_s=phase, x_realtime_run=round(seconds_of_video / report.seconds, 1),
         x_realtime_phase=round(seconds_of_video / phase, 1), cpu_s=round(cpu_s, 2),
         x_realtime_cpu_2_cores=round(seconds_of_video / (cpu_s / 2), 1), frames=report.frames,
         frames_per_video=round(report.frames / len(clips), 1), failed=report.failed)
    # the reading thread (hash, sample, preprocess) runs beside the model (embed): their busy
    # times add up to more than the phase by what overlapped
    reading = t["hash"] + t["sample_and_preprocess"]
    emit(figure="videos_phase_split", hash_s=round(t["hash"], 3), sample_s=round(t["sample"], 3),
         preprocess_s=round(t["sample_and_preprocess"] - t["sample"], 3), embed_s=round(t["embed"], 3),
         reading_thread_busy_s=round(reading, 3), overlapped_s=round(reading + t["embed"] - phase, 3),
         sample_share=round(t["sample"] / phase, 3), embed_share=round(t["embed"] / phase, 3),
         hash_share=round(t["hash"] / phase, 3))
    decode = t["sample"] - t["scale_and_convert"]
    emit(figure="sampling_split", keyframe_list_s=round(t["keyframe_list"], 3),
         keyframe_decodes=timers.counts["keyframe"], keyframe_s=round(t["keyframe"], 3),
         forward_decodes=timers.counts["forward"],
         forward_frames_decoded=timers.counts["forward_decoded"], forward_s=round(t["forward"], 3),
         scale_and_convert_s=round(t["scale_and_convert"], 3), open_demux_decode_s=round(decode, 3),
         ms_per_frame_kept=round(1000 * t["sample"] / max(report.frames, 1), 1))


def video_path_targets() -> list[tuple[object, str, str]]:
    """What a photo-only run executes for videos: the extension checks and the videos phase."""
    checks = [(module, "has_video_extension", f"{module.__name__}.has_video_extension")
              for module in (build_module, plan, records, scan) if hasattr(module, "has_video_extension")]
    return [(build_module, "index_videos", "index_videos"), *checks]


@contextmanager
def cpu_time():
    """The process's CPU seconds (all threads, user and system) spent in the block, in ["s"]: on
    2 cores shared with other work, wall time says what others left us, CPU time what we used."""
    found = {}
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        yield found
    finally:
        after = resource.getrusage(resource.RUSAGE_SELF)
        found["s"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


@contextmanager
def without_videos():
    """The run as it would be without videos: no file is a video's and the videos phase is a no-op."""
    patched = [(build_module, "index_videos", lambda *a, **k: None)]
    patched += [(module, "has_video_extension", lambda name: False) for module in (build_module, plan, records, scan)
                if hasattr(module, "has_video_extension")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patched]
    for owner, name, value in patched:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in originals:
            setattr(owner, name, value)


def bench_photos(work: Path, encoder, count: int, rounds: int) -> None:
    folder = work / "photos"
    folder.mkdir(exist_ok=True)
    for n in range(count):
        photo = sample_photo(SOURCES[n % len(SOURCES)]).rotate(n % 4 * 90, expand=True)
        scale = 1600 / max(photo.size)
        photo.resize((round(photo.width * scale), round(photo.height * scale))).save(folder / f"{n:03d}.jpg",
                                                                                  quality=90)
    build_index([folder], work / "photos-warm", encoder=encoder)
    best = {"with": 0.0, "without": 0.0}
    least_cpu = {"with": float("inf"), "without": float("inf")}
    path_timers = Timers()  # what the video code path itself costs a photo-only run
    for round_ in range(rounds):
        for mode in ("without", "with") if round_ % 2 else ("with", "without"):
            store = work / f"photos-{mode}-{round_}"
            with cpu_time() as cpu:
                if mode == "with":
                    with path_timers.wrapped(video_path_targets()):
                        report = build_index([folder], store, encoder=encoder)
                else:
                    with without_videos():
                        report = build_index([folder], store, encoder=encoder)
            best[mode] = max(best[mode], report.embedded / report.seconds)
            least_cpu[mode] = min(least_cpu[mode], cpu["s"] / report.embedded)
    emit(figure="photos_with_and_without_videos", photos=count, images_per_s_with=round(best["with"], 2),
         images_per_s_without=round(best["without"], 2), ratio=round(best["with"] / best["without"], 3),
         cpu_ms_per_image_with=round(1000 * least_cpu["with"], 1),
         cpu_ms_per_image_without=round(1000 * least_cpu["without"], 1),
         cpu_ratio=round(least_cpu["with"] / least_cpu["without"], 3),
         video_path_ms_per_run=round(1000 * sum(path_timers.seconds.values()) / rounds, 3),
         video_path_calls_per_run=sum(path_timers.counts.values()) // rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6, help="phone-like clips (one more with x264's defaults)")
    parser.add_argument("--workdir", type=Path, default=None, help="keeps the clips for the next run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--part", choices=("all", "videos", "photos"), default="all")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.gettempdir()) / "vitsearch-video-bench"
    clips = make_clips(workdir / "clips", args.clips)
    for clip in clips:
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            keys = sum(1 for e in stream.index_entries if e.is_keyframe)
            emit(figure="clip", name=clip.name, seconds=round(float(stream.duration * stream.time_base), 1),
                 mbit_s=round(container.bit_rate / 1e6, 1), keyframes=keys, profile=stream.codec_context.profile)
    encoder = load_encoder("random", device="cpu")
    with tempfile.TemporaryDirectory(dir=workdir) as work:
        if args.part in ("all", "videos"):
            bench_videos(clips, Path(work), encoder, args.rounds)
        if args.part in ("all", "photos"):
            bench_photos(Path(work), encoder, args.photos, args.rounds)


if __name__ == "__main__":
    main()
