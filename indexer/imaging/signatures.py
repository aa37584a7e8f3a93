"""Cheap per-image signatures computed from pixels already decoded for the model: a hash of the
decoded pixels (same picture, different file) and an orientation hash from which the hashes of
all eight rotations and mirrors follow by bit operations, so rotated and mirrored copies are
found without running the model eight times.

The orientation hash is the sign of the 63 lowest non-DC DCT coefficients of a 32x32 grey
thumbnail. Mirroring negates the odd horizontal frequencies and transposing swaps the two axes,
so each of the eight transforms is a fixed bit permutation and flip of the stored hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .quality import Quality, quality_of

__all__ = ["Signature", "TRANSFORMS", "pixel_hash", "orientation_hash", "signature_of", "transformed_hashes",
           "inverse_transform", "apply_transform", "hamming"]

GRID = 32  # thumbnail side the DCT runs on
BLOCK = 8  # low-frequency block whose signs make the hash
FLAT_STD = 2.0  # a thumbnail this flat (grey levels) has no shape to hash: its bits would be noise

# Each transform maps an image onto another; rotations are clockwise, and "mirror-rotate-N" mirrors
# left-right first, then rotates. Values: (transpose first?, mirror left-right after?, flip
# top-bottom after?), the decomposition the bit operations use.
TRANSFORMS: dict[str, tuple[bool, bool, bool]] = {
    "rotate-90": (True, True, False),
    "rotate-180": (False, True, True),
    "rotate-270": (True, False, True),
    "mirror": (False, True, False),
    "mirror-rotate-90": (True, True, True),
    "mirror-rotate-180": (False, False, True),
    "mirror-rotate-270": (True, False, False),
}
# The same transforms as Pillow operations on an image (Pillow's ROTATE_90 is counter-clockwise).
_PIL_OPS = {
    "rotate-90": Image.Transpose.ROTATE_270,
    "rotate-180": Image.Transpose.ROTATE_180,
    "rotate-270": Image.Transpose.ROTATE_90,
    "mirror": Image.Transpose.FLIP_LEFT_RIGHT,
    "mirror-rotate-90": Image.Transpose.TRANSVERSE,
    "mirror-rotate-180": Image.Transpose.FLIP_TOP_BOTTOM,
    "mirror-rotate-270": Image.Transpose.TRANSPOSE,
}


@dataclass(frozen=True)
class Signature:
    pixel_hash: str  # of the decoded pixels as the model saw them upright
    orientation_hash: int | None  # None for an image too flat to hash meaningfully
    quality: Quality | None = None  # sharpness and clipping (indexer.imaging.quality)


def pixel_hash(image: Image.Image, orientation: int = 1) -> str:
    """A hash of decoded pixels (before any reduction), their shape and the orientation that
    turns them upright: equal for files that differ only in metadata or container."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode}:{image.width}x{image.height}:{orientation};".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def orientation_hash(upright: Image.Image) -> int | None:
    grey = np.asarray(upright.convert("L").resize((GRID, GRID), Image.Resampling.BOX), dtype=np.float64)
    if grey.std() < FLAT_STD:
        return None
    coefficients = _DCT @ grey @ _DCT.T
    bits = coefficients[:BLOCK, :BLOCK] > 0
    return int(_pack(bits.reshape(1, BLOCK * BLOCK))[0])


def signature_of(decoded: Image.Image, orientation: int, upright: Image.Image) -> Signature:
    return Signature(pixel_hash(decoded, orientation), orientation_hash(upright), quality_of(upright, decoded))


def apply_transform(image: Image.Image, name: str) -> Image.Image:
    """The image under one of TRANSFORMS (what tests plant, and what the names mean)."""
    return image.transpose(_PIL_OPS[name])


def inverse_transform(name: str) -> str:
    """The transform that undoes `name` (rotations reverse; mirrors undo themselves)."""
    return {"rotate-90": "rotate-270", "rotate-270": "rotate-90"}.get(name, name)


def transformed_hashes(hashes: np.ndarray, name: str) -> np.ndarray:
    """The orientation hashes of each image after transform `name` (int64 in, int64 out)."""
    transpose, mirror, flip = TRANSFORMS[name]
    bits = _unpack(hashes).reshape(-1, BLOCK, BLOCK)
    if transpose:
        bits = bits.transpose(0, 2, 1)
    if mirror:  # x -> W-1-x negates coefficients of odd horizontal frequency
        bits = bits ^ _ODD_COLUMNS
    if flip:
        bits = bits ^ _ODD_ROWS
    bits = bits.reshape(-1, BLOCK * BLOCK).copy()
    bits[:, 0] = False  # the DC term's sign says nothing; it is kept at 0
    return _pack(bits)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Differing bits between int64 hashes, elementwise."""
    x = np.bitwise_xor(a.astype(np.int64), b.astype(np.int64)).view(np.uint64)
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(GRID)
_ODD_COLUMNS = (np.arange(BLOCK)[None, :] % 2 == 1).repeat(BLOCK, axis=0)
_ODD_ROWS = _ODD_COLUMNS.T.copy()
_WEIGHTS = (np.uint64(1) << np.arange(BLOCK * BLOCK, dtype=np.uint64))


def _pack(bits: np.ndarray) -> np.ndarray:
    bits = bits.astype(bool).copy()
    bits[:, 0] = False
    packed = (bits.astype(np.uint64) * _WEIGHTS).sum(axis=1, dtype=np.uint64)
    return packed.view(np.int64)


def _unpack(hashes: np.ndarray) -> np.ndarray:
    values = np.asarray(hashes, dtype=np.int64).view(np.uint64)
    return ((values[:, None] >> np.arange(BLOCK * BLOCK, dtype=np.uint64)) & np.uint64(1)).astype(bool)
