"""Indexing throughput against its peers, on the same files in one run; one JSON line per figure.

    python tests/bench/index_throughput.py FOLDER [--batch-size N] [--device cpu|cuda] [--repeat N]

(a) the model card's loop: one image at a time, fp32; (b) timm's batch pipeline
(create_dataset + create_loader with worker processes) in fp32 and bf16 autocast; (c) the model
alone on ready tensors at our precision; (d) `vitsearch index` into a fresh store: steady state
and whole command (against (b) in bf16 both as its loop alone and as a whole script with its
start-up), its peak RSS, and the cosine of its embeddings against the exact fp32
reference from (a). Also the per-image CPU cost of our decode+preprocess and of the model, and
the input path alone (read, decode, transform; no model) at full parallelism: on a GPU, with
(c), it says whether decoding or the model limits (d). From these, the sum-of-parts limit (on a
CPU: decode + model CPU per image over the cores), and (d) as a ratio of it and of (b) in bf16.
All with the same random weights (`--weights random`): speed does not depend on weight values.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np
import torch

from vitsearch.indexer.imaging.images import IMAGE_EXTENSIONS, load_image, read_image_bytes
from vitsearch.indexer.model.encoder import load_encoder
from vitsearch.indexer.store.store import Store


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def model_card_loop(files, reference) -> dict[str, np.ndarray]:
    """model(transforms(img).unsqueeze(0)) per image, fp32: the quality reference too."""
    from PIL import Image

    model, transforms, device = reference.model, reference.transform, reference.device
    vectors = {}
    started = time.perf_counter()
    for path in files:
        image = Image.open(path).convert("RGB")
        with torch.inference_mode():
            vectors[str(path)] = model(transforms(image).unsqueeze(0).to(device))[0].cpu().numpy()
    seconds = time.perf_counter() - started
    emit(figure="model_card_loop", images=len(files), images_per_s=round(len(files) / seconds, 2))
    return vectors


def timm_readable(folder: Path) -> list[Path]:
    """The files timm's folder reader takes (it skips some formats, WebP among them)."""
    import timm.data

    dataset = timm.data.create_dataset("", root=str(folder))
    return sorted(Path(dataset.reader.filename(i, absolute=True)) for i in range(len(dataset)))


def timm_batch_pipeline(folder: Path, model, data_config: dict, batch_size: int, dtype, device: str) -> float:
    from tests.bench.timm_pipeline import embed_folder

    started = time.perf_counter()
    count = embed_folder(str(folder), model, data_config, batch_size, dtype, device)
    seconds = time.perf_counter() - started
    emit(figure="timm_batch_pipeline", precision=str(dtype).replace("torch.", "") if dtype else "fp32",
         images=count, images_per_s=round(count / seconds, 2))
    return count / seconds


def timm_whole_script(folder: Path, batch_size: int, device: str) -> float | None:
    """timm's bf16 batch pipeline as a user runs it (tests/bench/timm_pipeline.py in a fresh
    process: imports, model, loader, loop), timed like `vitsearch index`'s whole command, from
    before the imports, so that start-up is on both sides of the comparison."""
    from vitsearch.indexer.model.weights import MODEL_NAME

    result = subprocess.run([sys.executable, str(REPO / "tests" / "bench" / "timm_pipeline.py"), str(folder),
                             MODEL_NAME.partition(".")[0], str(batch_size), device], capture_output=True, text=True)
    if result.returncode:
        emit(figure="timm_whole_script", error=result.stderr[-1000:])
        return None
    count, seconds = result.stdout.split()[-2:]
    rate = int(count) / float(seconds)
    emit(figure="timm_whole_script", precision="bf16" if device == "cpu" else "fp16", images=int(count),
         seconds=round(float(seconds), 1), images_per_s=round(rate, 2))
    return rate


def model_alone(encoder, batch_size: int) -> float:
    batches = 4 if encoder.device == "cpu" else max(8, 4096 // batch_size)
    batch = torch.randn(batch_size, 3, 256, 256, device=encoder.device)
    encoder.encode(batch[:4])  # warm
    started = time.perf_counter()
    for _ in range(batches):
        encoder.encode(batch)
    seconds = time.perf_counter() - started
    rate = batches * batch_size / seconds
    emit(figure="model_alone_ready_tensors", device=encoder.device, precision=encoder.precision,
         graph=encoder.graph, batch_size=batch_size, images_per_s=round(rate, 2),
         cpu_ms_per_image=round(1000 * (os.cpu_count() or 1) / rate, 1) if encoder.device == "cpu" else None)
    return rate


def input_path_alone(files, encoder, batch_size: int) -> float:
    """Read + decode + transform at the indexer's parallelism, no model: the feed rate."""
    from concurrent.futures import ThreadPoolExecutor

    from vitsearch.indexer.ingest import default_workers

    def prepare(path):
        data = read_image_bytes(str(path))
        if encoder.device_inputs is not None:
            return encoder.device_inputs.prepare(data)[0]
        return encoder.preprocess(load_image(data, draft_size=encoder.draft_size).image)

    started = time.perf_counter()
    with ThreadPoolExecutor(default_workers(encoder)) as pool:
        prepared = list(pool.map(prepare, files))
        if encoder.device_inputs is not None:
            for start in range(0, len(prepared), batch_size):
                results = encoder.device_inputs.finish(prepared[start:start + batch_size])
                torch.stack(results)
            if encoder.device.startswith("cuda"):
                torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    emit(figure="input_path_alone", decode="device" if encoder.device_inputs else "cpu",
         workers=default_workers(encoder), images=len(files), images_per_s=round(len(files) / seconds, 2))
    return len(files) / seconds


def decode_cost(files, encoder) -> dict[str, float]:
    """Our decode + preprocess per image, single-threaded, by format; returns ms per file name."""
    by_format: dict[str, list[float]] = {}
    per_file = {}
    for path in files:
        data = read_image_bytes(str(path))
        started = time.perf_counter()
        loaded = load_image(data, draft_size=encoder.draft_size)
        encoder.preprocess(loaded.image)
        per_file[path.name] = 1000 * (time.perf_counter() - started)
        by_format.setdefault(loaded.info.format, []).append(per_file[path.name])
    emit(figure="decode_preprocess_cpu_ms_per_image", mean=round(float(np.mean(list(per_file.values()))), 1),
         **{fmt: round(float(np.mean(times)), 1) for fmt, times in by_format.items()})
    return per_file


def sum_of_parts_limit(decode_ms: dict[str, float], names, model_rate: float, input_rate: float,
                       device: str) -> float:
    """The rate the parts allow together on these files: on a CPU decoding and the model share the
    cores (their CPU costs add up); on a GPU they overlap, so the slower one limits."""
    decode = float(np.mean([decode_ms[name] for name in names]))
    cores = os.cpu_count() or 1
    if device == "cpu":
        model_ms = 1000 * cores / model_rate
        limit = 1000 * cores / (decode + model_ms)
    else:
        model_ms, limit = None, min(model_rate, input_rate)
    emit(figure="sum_of_parts_limit", images=len(names), cores=cores, decode_cpu_ms=round(decode, 1),
         model_cpu_ms=round(model_ms, 1) if model_ms else None, images_per_s=round(limit, 2))
    return limit


def query_latency(files, encoder, runs: int = 20) -> None:
    """Image file -> 512-d vector with the model warm (what a search by upload waits for)."""
    jpegs = [p for p in files if p.suffix.lower() in (".jpg", ".jpeg")] or files
    path = jpegs[len(jpegs) // 2]

    def embed() -> None:
        loaded = load_image(read_image_bytes(str(path)), draft_size=encoder.draft_size)
        encoder.encode(encoder.preprocess(loaded.image).unsqueeze(0))

    embed()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        embed()
        times.append(1000 * (time.perf_counter() - started))
    emit(figure="query_file_to_vector_ms", file=path.name, p50=round(float(np.median(times)), 1),
         p95=round(float(np.percentile(times, 95)), 1))


def vitsearch_index(folder: Path, batch_size: int, reference: dict[str, np.ndarray], exact: bool,
                    device: str = "cpu", limit: float | Callable[[], float] | None = None,
                    timm_rate: float | None = None, timm_whole: float | None = None) -> dict:
    """One `vitsearch index` run in a fresh process; with `limit` (sum of parts, or a function that
    measures it once the run is done), `timm_rate` (timm's bf16 pipeline on the same files, its loop
    alone) and `timm_whole` (the same as a whole script, start-up included) its rates are also
    given as ratios to them."""
    store = Path(tempfile.mkdtemp(prefix="vitsearch-throughput-")) / "store"
    code = (
        "import json, sys, time\n"
        "from tests.bench.memory import peak_rss_mb\n"
        "started = time.perf_counter()\n"
        "from indexer import build_index\n"
        "marks = []\n"
        "report = build_index([sys.argv[1]], sys.argv[2], weights='random', batch_size=int(sys.argv[3]),"
        " exact=sys.argv[4] == '1', device=sys.argv[5],"
        " progress=lambda phase, done, total: marks.append((time.perf_counter(), done)))\n"
        "print(json.dumps({'whole_s': time.perf_counter() - started, 'started': started,"
        " 'embedded': report.embedded, 'marks': marks,"
        " 'peak_rss_mb': peak_rss_mb()}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(folder), str(store), str(batch_size),
                             "1" if exact else "0", device], cwd=REPO, capture_output=True, text=True)
    if result.returncode:
        emit(figure="vitsearch_index", error=result.stderr[-1000:])
        return {}
    run = json.loads(result.stdout.splitlines()[-1])
    marks = [(t, done) for t, done in run["marks"] if done > 0]  # the first call, 0 done, is the plan's
    (t0, d0), (t1, d1) = marks[0], marks[-1]  # first and last commits: steady state in between
    steady = (d1 - d0) / (t1 - t0) if t1 > t0 else float("nan")
    with Store(store).connect() as con:
        rows = con.execute("SELECT path, embedding FROM images WHERE status = 'ok'").fetchall()
    cosines = [float(np.dot(np.asarray(e), reference[p]) / np.linalg.norm(reference[p]))
               for p, e in rows if p in reference]
    whole = run["embedded"] / run["whole_s"]
    if callable(limit):
        limit = limit()
    ratios = {}
    if limit:
        ratios.update(steady_of_limit=round(steady / limit, 3), whole_of_limit=round(whole / limit, 3))
    if timm_rate:
        ratios.update(steady_vs_timm_bf16=round(steady / timm_rate, 3), whole_vs_timm_bf16=round(whole / timm_rate, 3))
    if timm_whole:
        ratios.update(whole_vs_timm_bf16_whole_script=round(whole / timm_whole, 3))
    figure = dict(figure="vitsearch_index", device=device, mode="exact" if exact else "default",
                  images=run["embedded"], steady_images_per_s=round(steady, 2),
                  whole_command_images_per_s=round(whole, 2), **ratios,
                  until_first_file_s=round(t0 - run["started"], 1), peak_rss_mb=round(run["peak_rss_mb"]),
                  min_cosine_vs_reference=round(min(cosines), 6) if cosines else None,
                  mean_cosine_vs_reference=round(float(np.mean(cosines)), 6) if cosines else None)
    emit(**figure)
    return figure


@dataclass
class LimitParts:
    """What the sum-of-parts limit is measured from: our encoder (its model is timed around each
    run), the per-file decode cost and the input path's rate."""

    encoder: object
    batch_size: int
    decode_ms: dict[str, float]
    input_rate: float
    device: str

    def limit_around(self, names) -> Callable[[], float]:
        """Times the model now; the returned function times it again and gives the limit with the
        faster of the two (this machine's speed drifts by 15-30% within minutes: the stricter bar)."""
        before = model_alone(self.encoder, self.batch_size)

        def limit() -> float:
            rate = max(before, model_alone(self.encoder, self.batch_size))
            return sum_of_parts_limit(self.decode_ms, names, rate, self.input_rate, self.device)

        return limit


def repeated_index(folder: Path, names, reference: dict[str, np.ndarray], parts: LimitParts,
                   timm_rate: float | None, timm_whole: float | None, repeat: int) -> None:
    """`vitsearch index` against the limit `repeat` times, with the median ratios when more than
    once; each run's limit uses the model timed right before and right after it."""
    figures = []
    for _ in range(repeat):
        limit = parts.limit_around(names)
        figures.append(vitsearch_index(folder, parts.batch_size, reference, exact=False, device=parts.device,
                                       limit=limit, timm_rate=timm_rate, timm_whole=timm_whole))
    if repeat > 1:
        keys = [k for k in figures[0] if k.endswith(("_of_limit", "_whole_script", "_per_s"))]
        emit(figure="vitsearch_index_median", runs=repeat,
             **{k: round(float(np.median([f[k] for f in figures if k in f])), 3) for k in keys})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, help="default: what the indexer uses on the device")
    parser.add_argument("--repeat", type=int, default=1,
                        help="default-mode index runs against the limit (medians of the ratios when > 1)")
    args = parser.parse_args()
    folder = Path(args.folder)
    files = image_files(folder)
    reference = load_encoder("random", device=args.device, exact=True)
    ours = load_encoder("random", device=args.device)
    batch_size = args.batch_size or ours.default_batch_size
    ours.prepare_graph(len(files), batch_size)  # the model alone as the run will use it: compiled or eager
    emit(figure="setup", files=len(files), cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
         device=torch.cuda.get_device_name() if args.device == "cuda" else "cpu", batch_size=batch_size)
    vectors = model_card_loop(files, reference)
    half = torch.bfloat16 if args.device == "cpu" else torch.float16
    timm_rates = [timm_batch_pipeline(folder, reference.model, reference.data_config, batch_size, dtype, args.device)
                  for dtype in (None, half)]
    model_alone(ours, batch_size)  # also timed around each index run below
    decode_ms = decode_cost(files, ours)
    input_rate = input_path_alone(files, ours, batch_size)
    query_latency(files, ours)
    readable = timm_readable(folder)
    everything = len(readable) == len(files)
    timm_whole = timm_whole_script(folder, batch_size, args.device) if everything else None
    parts = LimitParts(ours, batch_size, decode_ms, input_rate, args.device)
    repeated_index(folder, [p.name for p in files], vectors, parts, timm_rates[1] if everything else None,
                   timm_whole, args.repeat)
    vitsearch_index(folder, batch_size, vectors, exact=True, device=args.device)
    if not everything:  # timm's pipeline skipped some files (WebP): compare with it on exactly its own
        subset = Path(tempfile.mkdtemp(prefix="vitsearch-timm-files-"))
        for path in readable:
            os.link(path, subset / path.name)
        vectors = {str(subset / Path(p).name): v for p, v in vectors.items()}
        emit(figure="same_files_as_timm", files=len(readable))
        timm_whole = timm_whole_script(subset, batch_size, args.device)
        repeated_index(subset, [p.name for p in readable], vectors, parts, timm_rates[1], timm_whole, args.repeat)


if __name__ == "__main__":
    main()
