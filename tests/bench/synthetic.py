"""Synthetic embeddings for benchmarks: 512-d unit vectors from a mixture of clusters.

Real photo embeddings are clustered (subjects, scenes, near-duplicates), which is what makes
ANN indexes work; uniform random vectors would be a misleadingly hard and unrealistic case.
"""

from __future__ import annotations

import numpy as np

__all__ = ["clustered_unit_vectors"]


def clustered_unit_vectors(n: int, dim: int = 512, clusters: int = 2000, spread: float = 1.25,
                           seed: int = 0) -> np.ndarray:
    """n unit vectors: cluster centres on the sphere plus Gaussian spread, renormalised."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        labels = rng.integers(0, clusters, stop - start)
        noise = rng.standard_normal((stop - start, dim)).astype(np.float32) * (spread / np.sqrt(dim))
        block = centres[labels] + noise
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def plant_near_duplicates(vectors: np.ndarray, fraction: float = 0.01, noise: float = 0.1,
                          seed: int = 1) -> np.ndarray:
    """Overwrite a fraction of rows with slightly perturbed copies of other rows (cosine ~0.99),
    like re-encoded or resized copies; returns the (copy, original) row pairs."""
    rng = np.random.default_rng(seed)
    n, dim = vectors.shape
    count = int(n * fraction)
    rows = rng.choice(n, size=2 * count, replace=False)
    copies, originals = rows[:count], rows[count:]
    perturbed = vectors[originals] + rng.standard_normal((count, dim)).astype(np.float32) * (noise / np.sqrt(dim))
    vectors[copies] = perturbed / np.linalg.norm(perturbed, axis=1, keepdims=True)
    return np.stack([copies, originals], axis=1)
