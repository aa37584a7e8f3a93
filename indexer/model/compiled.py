"""The model as a graph compiled ahead of time (AOTInductor, frozen weights), built once per
user and reused by every later run on the CPU.

Measured on 2 cores (AVX512-BF16, no AMX; tests/bench/precision_bench.py --compiled): batch 32
in bf16 runs ~1.2x faster through the compiled graph than eagerly (oneDNN's linear on prepacked
weights, fused epilogues). Building it costs ~25-45 s, once: the graph is a package in the model
cache (`compiled/<key>.pt2`, ~80 MB in bf16), keyed by the weights, torch, this CPU, its thread
count, the precision and the batch size, and a later process loads it in ~0.1 s, where compiling
within each process (torch.compile) would pay ~14 s of tracing every time.

"auto" loads a cached graph in every run that embeds at least one full batch, and builds one in
a run that embeds at least COMPILE_MIN_IMAGES (that run wins back about half of the build, later
runs the rest), counted as the run decides them: copies and renames reuse stored vectors and do
not count (indexer.ingest asks once that many are known); `yes` builds it whatever the run's
size; `no` neither builds nor loads. int8 (dynamically quantised Linear layers) stays eager.

The graph serves batches of exactly its size; others (the last of a run, a query) run eagerly.
A graph built after a run's precision check has its first batch checked against fp32 too (see
TimmEncoder._check_new_graph); one that misses is refused: removed, with a note beside it.
A failure to build or load (no C++ compiler, an unsupported torch, a damaged package) is said
once and the run goes on eagerly; a package that does not load is removed, and a failed build
leaves a note beside it so that "auto" does not try again on every long run.

A torch upgrade, a new CPU or another batch size each make a new package: a build keeps the
KEEP_GRAPHS most recently used of them (a load marks its package used) and removes the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..locations import cache_root
from . import cpu_features

__all__ = ["COMPILE_MODES", "COMPILE_MIN_IMAGES", "KEEP_GRAPHS", "CompiledForward", "check_compile_mode",
           "failure_note", "graph_path", "prune_graphs", "should_compile"]

COMPILE_MODES = ("auto", "yes", "no")
COMPILE_MIN_IMAGES = 1000  # ~30-45 s of building, once, against ~0.017 s saved per image (bf16, batch 32)
KEEP_GRAPHS = 3  # packages kept after a build (~80 MB each in bf16): the most recently used
_COMPILABLE = ("bf16", "fp32")
_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def has_cpp_compiler() -> bool:
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def check_compile_mode(mode: str) -> None:
    from ..errors import ConfigError

    if mode not in COMPILE_MODES:
        raise ConfigError(f"compile_mode={mode!r} is not one of {', '.join(COMPILE_MODES)}", parameter="compile_mode")


def should_compile(mode: str, *, device: str, precision: str, images: int, batch_size: int = 1,
                   cached: bool = False, failed_before: bool = False) -> bool:
    """Whether a run known to embed `images` goes through the compiled graph (see the module
    docstring); `cached`: this graph is already built; `failed_before`: building it failed on this
    machine before (auto does not try again; `yes` does)."""
    check_compile_mode(mode)
    if mode == "no" or device != "cpu" or precision not in _COMPILABLE:
        return False
    if mode == "yes":
        return True
    if cached:
        return images >= batch_size
    return images >= COMPILE_MIN_IMAGES and has_cpp_compiler() and not failed_before


def failure_note(path: Path) -> Path:
    """Where a failed build of the graph at `path` says why (kept until a build succeeds)."""
    return path.with_suffix(".failed")


def graph_path(*, model_name: str, fingerprint: str, precision: str, batch_size: int) -> Path:
    """Where the compiled graph of these weights at this precision and batch size is kept."""
    import torch

    key = {"model": model_name, "weights": fingerprint, "precision": precision, "batch": batch_size,
           "torch": torch.__version__, "threads": torch.get_num_threads(), "python": sys.version_info[:2],
           "cpu": sorted(cpu_features.cpu_flags())}  # what the generated kernels may use
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / "compiled" / f"{precision}-b{batch_size}-{digest}.pt2"


def prune_graphs(folder: Path, keep: int = KEEP_GRAPHS) -> list[Path]:
    """Remove all but the `keep` most recently used packages in `folder` (and the notes of failed
    builds that are older than the oldest package kept); returns what was removed."""
    def used(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # removed meanwhile by another process's prune
            return 0.0

    packages = sorted(folder.glob("*.pt2"), key=used, reverse=True)
    stale = packages[keep:]
    if len(packages) > keep > 0:
        oldest_kept = used(packages[keep - 1])
        stale += [note for note in folder.glob("*.failed") if used(note) < oldest_kept]
    removed = []
    for path in stale:
        with contextlib.suppress(OSError):  # a cache we cannot write, or a file already gone
            path.unlink()
            removed.append(path)
    return removed


def _mark_used(path: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache: its packages are simply not pruned by use
        os.utime(path)


def _exportable(model, forward: Callable, precision: str):
    """The forward pass to export: batch -> pooled pre-logits at the precision (bf16 under autocast,
    so that the graph computes what the eager model does)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, batch):
            if precision == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return forward(self.model, batch).float()
            return forward(self.model, batch)

    return Pooled().eval()


class CompiledForward:
    """A batch -> pooled pre-logits function through the compiled graph at `path`, loaded (or
    built first, with `build`) on first use, for one batch size and precision."""

    def __init__(self, model, forward: Callable, batch_size: int, precision: str, path: Path, *,
                 input_size: tuple[int, int], build: bool, log: Callable[[str], None] | None = None):
        self.model, self.forward, self.input_size = model, forward, input_size
        self.batch_size, self.precision, self.path, self.build = batch_size, precision, path, build
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.failed: str | None = None
        self.used = False
        self._runner = None

    def serves(self, batch, precision: str) -> bool:
        return self.failed is None and precision == self.precision and len(batch) == self.batch_size

    def __call__(self, batch):
        try:
            if self._runner is None:
                self._runner = self._load()
            pooled = self._runner(batch)
            self.used = True
            return pooled
        except Exception as error:  # inductor's errors have no common base: any failure means eager
            self.failed = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            self.log(f"note: the compiled model failed ({self.failed[:200]}); running it eagerly")
            return self.forward(self.model, batch)

    def refuse(self, reason: str) -> None:
        """The graph gives wrong vectors: run eagerly from now on, and remove the package with a
        note beside it, so that "auto" neither loads nor builds it again on this machine."""
        self.failed = reason
        self.log(f"note: the compiled model is not used: {reason}; running it eagerly")
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            failure_note(self.path).write_text(reason)

    def _load(self) -> Callable:
        import torch

        if not self.path.exists():
            if not self.build:
                raise FileNotFoundError(f"no compiled graph at {self.path}")
            try:
                self._build()
            except Exception as error:
                with contextlib.suppress(OSError):  # a cache we cannot write: the reason still goes to stderr
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    failure_note(self.path).write_text(f"{type(error).__name__}: {error}"[:2000])
                raise
            failure_note(self.path).unlink(missing_ok=True)
            prune_graphs(self.path.parent)
        try:
            # torch's C++ loader itself: torch._inductor's Python side costs ~3 s to import.
            loader = torch._C._aoti.AOTIModelPackageLoader(str(self.path), "model", False, 1, -1)
        except Exception:
            self.path.unlink(missing_ok=True)  # damaged or from elsewhere: the next long run rebuilds it
            raise
        _mark_used(self.path)
        return lambda batch: loader.boxed_run([batch])[0]

    def _build(self) -> None:
        import logging

        import torch
        import torch._inductor

        if not has_cpp_compiler():
            raise RuntimeError("no C++ compiler (g++, c++ or clang++) on the PATH")
        # Inductor's own kernel cache lives beside our prepared models, so that a rebuild is quicker.
        os.environ.setdefault(_CACHE_ENV, str(cache_root() / "inductor"))
        self.log(f"compiling the model for this CPU (batch {self.batch_size}, {self.precision}; once, ~30-45 s;"
                 f" kept in {self.path.parent})")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime": a CPU build
        module = _exportable(self.model, self.forward, self.precision)
        example = torch.zeros(self.batch_size, 3, *self.input_size)
        # Without grad, inductor prepacks the frozen weights for oneDNN (where the speed comes from).
        with torch.no_grad():
            program = torch.export.export(module, (example,))
            with tempfile.TemporaryDirectory(dir=self.path.parent, prefix=".building-") as scratch:
                built = Path(scratch) / self.path.name
                torch._inductor.aoti_compile_and_package(program, package_path=str(built),
                                                         inductor_configs={"freezing": True})
                os.replace(built, self.path)  # whole or absent: a killed build leaves no package
