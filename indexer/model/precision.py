"""The precision policy: the choices, the ladder tried on this CPU, the parity check's outcome,
and its reuse from and recording into the store's manifest."""

from __future__ import annotations

__all__ = ["PRECISION_CHOICES"]

PRECISION_CHOICES = ("auto", "bf16", "int8", "fp32")  # what a run may ask for on a CPU; CUDA runs fp16
