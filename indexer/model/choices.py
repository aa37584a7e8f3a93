"""The values a model run takes besides its precision and compile mode (which live with their
owners, precision.py and compiled.py): where it runs and where its images are decoded. A module
of constants, so that the command line can offer them without loading the model."""

from __future__ import annotations

__all__ = ["DEVICES", "DECODE_MODES"]

DEVICES = ("auto", "cpu", "cuda")  # auto: CUDA when a GPU is there, else the CPU
DECODE_MODES = ("auto", "cpu", "device")  # auto: on the GPU for JPEGs when the model runs there
