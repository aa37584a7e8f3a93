"""The precision ladder on this CPU, in one run on the same files: one JSON line per figure.

    python tests/bench/precision_bench.py FOLDER [--batch-size 32] [--compiled]

For fp32, int8 and (where the CPU has it natively) bf16: the model alone on ready tensors
(images/s at batch 32), and `vitsearch index FOLDER --precision P` end to end into a fresh store
(decoding included), with the minimum cosine of its embeddings to the fp32 store's. Ratios are
against fp32 from the same run (these machines are shared and noisy). Random weights: speed does
not depend on weight values, and they are content-sensitive, so the cosines mean something.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np

from vitsearch.indexer.model import cpu_features
from vitsearch.indexer.model import encoder as encoders
from vitsearch.indexer.store.store import Store


def emit(**figure) -> None:
    print(json.dumps(figure), flush=True)


def model_alone(precision: str, batch_size: int, rounds: int = 3) -> float:
    import torch

    model = encoders.load_encoder("random", device="cpu", precision=precision, compile_mode="no")
    model.fallbacks = None  # measure this precision as it is, no check
    batch = torch.randn(batch_size, 3, 256, 256)
    model.encode(batch)  # warm-up (and int8's quantisation)
    started = time.perf_counter()
    for _ in range(rounds):
        model.encode(batch)
    return rounds * batch_size / (time.perf_counter() - started)


def compiled_against_eager(precision: str, batch_size: int, rounds: int = 4) -> None:
    """The compiled graph and the eager model, alternated in one process (the machine is noisy)."""
    import statistics

    import torch

    eager, graph = (encoders.load_encoder("random", device="cpu", precision=precision, compile_mode=mode)
                    for mode in ("no", "yes"))
    eager.fallbacks = graph.fallbacks = None
    graph.prepare_graph(10**9, batch_size)
    batch = torch.randn(batch_size, 3, 256, 256)
    started = time.perf_counter()
    ours = graph.encode(batch)
    emit(figure="compile_s", precision=precision, batch_size=batch_size,
         seconds=round(time.perf_counter() - started, 1), used=graph.graph == "compiled")
    reference = eager.encode(batch)
    rates: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(rounds):
        for name, model in (("eager", eager), ("compiled", graph)):
            started = time.perf_counter()
            model.encode(batch)
            model.encode(batch)
            rates[name].append(2 * batch_size / (time.perf_counter() - started))
    median = {name: statistics.median(values) for name, values in rates.items()}
    emit(figure="model_alone_compiled", precision=precision, images_per_s=round(median["compiled"], 2),
         eager_images_per_s=round(median["eager"], 2), vs_eager=round(median["compiled"] / median["eager"], 2),
         min_cosine_to_eager=round(float(np.min(np.sum(ours * reference, axis=1))), 6), rounds=rounds)


def index_with(folder: Path, store: Path, precision: str, batch_size: int) -> dict:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "vitsearch.ui.cli", "index", str(folder), "--store", str(store),
                             "--weights", "random", "--precision", precision, "--batch-size", str(batch_size),
                             "--json"], cwd=REPO, capture_output=True, text=True, check=True)
    summary = json.loads(result.stdout.splitlines()[-1])
    summary["wall_s"] = round(time.perf_counter() - started, 2)
    return summary


def embeddings(store: Path) -> dict[str, np.ndarray]:
    with Store(store).connect() as con:
        rows = con.execute("SELECT path, embedding FROM images WHERE status = 'ok'").fetchall()
    return {p: np.asarray(v, np.float32) for p, v in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--compiled", action="store_true",
                        help="also the compiled graph (AOTInductor, frozen weights) against eager")
    args = parser.parse_args()
    precisions = ["fp32", "int8"] + (["bf16"] if cpu_features.has_native_bf16() else [])
    emit(figure="cpu", native_bf16=cpu_features.has_native_bf16(),
         int8_dot_products=cpu_features.has_int8_dot_products(), auto_ladder=encoders.precision_ladder("cpu", False))
    alone = {p: model_alone(p, args.batch_size) for p in precisions}
    for p in precisions:
        emit(figure="model_alone", precision=p, images_per_s=round(alone[p], 2),
             vs_fp32=round(alone[p] / alone["fp32"], 2))
    if args.compiled:
        compiled_against_eager("bf16" if "bf16" in precisions else "fp32", args.batch_size)
    with tempfile.TemporaryDirectory(prefix="vitsearch-precision-") as scratch:
        runs = {p: index_with(args.folder, Path(scratch) / p, p, args.batch_size) for p in precisions}
        reference = embeddings(Path(scratch) / "fp32")
        for p in precisions:
            ours = embeddings(Path(scratch) / p)
            cosines = [float(ours[k] @ reference[k]) for k in reference if k in ours]
            emit(figure="vitsearch_index", precision=p, images=runs[p]["added"], seconds=runs[p]["seconds"],
                 wall_s=runs[p]["wall_s"], images_per_s=runs[p]["images_per_s"],
                 vs_fp32=round(runs["fp32"]["seconds"] / runs[p]["seconds"], 2),
                 min_cosine_to_fp32=round(min(cosines), 5), recorded=Store(Path(scratch) / p).manifest().get(
                     "precision_min_cosine"))


if __name__ == "__main__":
    main()
