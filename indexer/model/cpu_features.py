"""What this CPU can do, from /proc/cpuinfo: the precision ladder picks from it, and the keys of
what depends on it (a precision check's outcome, a compiled graph's kernels) include it."""

from __future__ import annotations

import functools

__all__ = ["cpu_flags", "has_native_bf16", "has_int8_dot_products", "PRECISION_FLAGS"]

NATIVE_BF16 = {"avx512_bf16", "amx_bf16"}
INT8_DOT_PRODUCTS = {"avx512_vnni", "avx_vnni", "amx_int8"}
PRECISION_FLAGS = NATIVE_BF16 | INT8_DOT_PRODUCTS  # what a precision check's outcome depends on


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags; empty where /proc/cpuinfo cannot be read (not Linux). Read once:
    on a many-core server the file is hundreds of kB, and three keys ask for it."""
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(flag for line in f if line.startswith("flags")
                             for flag in line.split(":", 1)[1].split())
    except OSError:
        return frozenset()


def has_native_bf16() -> bool:
    return bool(cpu_flags() & NATIVE_BF16)


def has_int8_dot_products() -> bool:
    return bool(cpu_flags() & INT8_DOT_PRODUCTS)
