"""Faster pixel decoders where Pillow is slow. WebP: torchvision's libwebp binding decodes still
photos about twice as fast as Pillow's animation decoder, to identical pixels."""

from __future__ import annotations

import sys
import warnings

from PIL import Image

__all__ = ["decode_fast"]

# torchvision 0.29 warns on every decode call that TorchCodec supersedes it; this covers all of ours.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")


def decode_fast(data: bytes, img: Image.Image) -> Image.Image | None:
    """The RGB pixels of `data` (already opened as `img`, header checked) when a fast decoder
    applies; None means Pillow should decode it, and report whatever is wrong with it."""
    if img.format != "WEBP" or img.mode != "RGB" or getattr(img, "n_frames", 1) != 1:
        return None
    if "torch" not in sys.modules:  # importing torch costs seconds: only worth it where the model runs
        return None                 # (a cluster's decode workers use Pillow, to the same pixels)
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_webp
    except ImportError:
        return None
    try:
        pixels = decode_webp(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError:
        return None
    if tuple(pixels.shape) != (3, img.height, img.width):
        return None
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), "RGB")
