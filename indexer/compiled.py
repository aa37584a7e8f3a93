"""The model as one compiled graph (torch.compile, inductor, frozen weights) for long CPU runs.

Measured on 2 cores (AVX512-BF16, no AMX; tests/bench/precision_bench.py): batch 32 in bf16
runs about 1.2x faster compiled than eager, but compiling costs ~37 s the first time and ~14 s
in a later process (inductor's kernel cache, kept in our cache folder, saves the C++ builds;
dynamo's tracing and freezing are paid each time). So "auto" compiles only when a run embeds
at least COMPILE_MIN_IMAGES images, where the saving outweighs that cost; `--compile yes`
forces it, `--compile no` never. int8 (dynamically quantised Linear layers) stays eager.

The compiled graph serves batches of exactly the size it was built for; any other size (the
last batch of a run) runs eagerly instead of compiling again. A failure to compile (no C++
compiler, an unsupported torch) is said once and the run goes on eagerly.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable

from .model_cache import cache_root

__all__ = ["COMPILE_MODES", "COMPILE_MIN_IMAGES", "CompiledForward", "check_compile_mode", "should_compile"]

COMPILE_MODES = ("auto", "yes", "no")
COMPILE_MIN_IMAGES = 2000  # ~14-37 s of compiling against ~0.017 s saved per image (bf16, batch 32)
_COMPILABLE = ("bf16", "fp32")
_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def has_cpp_compiler() -> bool:
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def check_compile_mode(mode: str) -> None:
    from .errors import ConfigError

    if mode not in COMPILE_MODES:
        raise ConfigError(f"--compile must be one of {', '.join(COMPILE_MODES)}, not {mode!r}")


def should_compile(mode: str, *, device: str, precision: str, images: int) -> bool:
    """Whether a run of `images` to embed compiles the model (see the module docstring)."""
    check_compile_mode(mode)
    if mode == "no" or device != "cpu" or precision not in _COMPILABLE:
        return False
    if mode == "yes":
        return True
    return images >= COMPILE_MIN_IMAGES and has_cpp_compiler()


class CompiledForward:
    """A batch -> pooled pre-logits function, compiled on first use for one batch size and
    precision (the caller enters the precision's autocast, which the graph captures)."""

    def __init__(self, forward: Callable, batch_size: int, precision: str,
                 log: Callable[[str], None] | None = None):
        self.forward, self.batch_size, self.precision = forward, batch_size, precision
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.failed: str | None = None
        self.used = False
        self._compiled = None

    def serves(self, batch, precision: str) -> bool:
        return self.failed is None and precision == self.precision and len(batch) == self.batch_size

    def __call__(self, batch):
        if self._compiled is None:
            self._compiled = self._compile()
        try:
            pooled = self._compiled(batch)
            self.used = True
            return pooled
        except Exception as error:  # inductor's errors have no common base: any failure means eager
            self.failed = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            self.log(f"note: compiling the model failed ({self.failed[:200]}); running it eagerly")
            return self.forward(batch)

    def _compile(self):
        import torch

        # Inductor's kernels live beside our prepared models, so that later runs reuse them.
        os.environ.setdefault(_CACHE_ENV, str(cache_root() / "inductor"))
        self.log(f"compiling the model for this CPU (batch {self.batch_size}; ~15-40 s, kernels cached)")
        return torch.compile(self.forward, dynamic=False, options={"freezing": True})
