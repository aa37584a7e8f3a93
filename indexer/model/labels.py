"""Labels from the model's own ImageNet-1k head: the top-5 classes of every image.

The stored embedding is the unit vector of the pre-logits p = fc_norm(mean of patch tokens).
LayerNorm's output satisfies mean(((p - beta) / gamma)^2) = 1 (up to its eps), so the length of
p follows from its direction: labels come from the stored vectors alone, with the head's one
matrix multiply. New rows and stores indexed before labels existed take the same path, and no
image goes through the model again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..store.store import LIVE, Store

__all__ = ["LabelHead", "pre_logits", "top_labels", "label_rows", "TOP_K", "LABEL_CHUNK"]

TOP_K = 5
LABEL_CHUNK = 4096  # rows per transaction: one chunk's logits are 16 MB


@dataclass(frozen=True)
class LabelHead:
    """The classifier and the final LayerNorm's affine parameters, as float64 arrays."""

    weight: np.ndarray  # (classes, dim)
    bias: np.ndarray  # (classes,)
    norm_weight: np.ndarray  # (dim,) LayerNorm gamma
    norm_bias: np.ndarray  # (dim,) LayerNorm beta
    names: tuple[str, ...]  # one description per class, e.g. "tabby, tabby cat"
    random: bool  # a random head (`--weights random`): labels that mean nothing

    @classmethod
    def from_model(cls, model, weight, bias, names, *, random: bool) -> LabelHead:
        as64 = lambda t: t.detach().to("cpu").double().numpy()  # noqa: E731
        return cls(as64(weight), as64(bias), as64(model.fc_norm.weight), as64(model.fc_norm.bias),
                   tuple(names), random)

    @property
    def fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        for array in (self.weight, self.bias, self.norm_weight, self.norm_bias):
            digest.update(np.ascontiguousarray(array, np.float32).tobytes())
        return digest.hexdigest()

    @property
    def source(self) -> str:
        return "random head (labels mean nothing)" if self.random else "the weights' ImageNet-1k head"


def pre_logits(units: np.ndarray, head: LabelHead) -> np.ndarray:
    """The pre-logits of unit embeddings: each vector scaled by the length LayerNorm gave it.

    With z = (s*e - beta) / gamma, mean(z^2) = 1 is a quadratic a*s^2 - 2*b*s + c - 1 = 0; of
    its roots the one that also best centres z (mean(z) = 0, LayerNorm's other constraint) wins.
    """
    e = np.asarray(units, np.float64)
    inv = 1.0 / head.norm_weight
    shifted = head.norm_bias * inv
    a = np.mean((e * inv) ** 2, axis=1)
    b = np.mean(e * inv * shifted, axis=1)
    c = float(np.mean(shifted**2))
    root = np.sqrt(np.maximum(b * b - a * (c - 1.0), 0.0))
    candidates = np.stack([(b + root) / a, (b - root) / a], axis=1)
    centring = np.abs(candidates * np.mean(e * inv, axis=1, keepdims=True) - np.mean(shifted))
    scale = np.take_along_axis(candidates, np.argmin(centring, axis=1)[:, None], axis=1)
    return e * scale


def top_labels(units: np.ndarray, head: LabelHead, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """(class indices, probabilities) of the k most likely classes per row, best first."""
    logits = pre_logits(units, head) @ head.weight.T + head.bias
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return best, np.take_along_axis(probs, best, axis=1)


def label_rows(store: Store, head: LabelHead, progress: Callable[[str, int, int], None] | None = None) -> int:
    """Give every live row without labels its top-5; returns how many rows were labelled.
    A different head than the one the store's labels came from relabels every row."""
    fingerprint = head.fingerprint
    if store.manifest().get("label_head_fingerprint") != fingerprint:  # a transaction only when it changes
        with store.transaction() as tx:
            tx.reset_labels(head.names, {"label_head_fingerprint": fingerprint, "label_head": head.source})
    with store.connect() as con:
        (todo,) = con.execute(f"SELECT count(*) FROM images WHERE {LIVE} AND labels IS NULL").fetchone()
    done, last = 0, -1
    while done < todo:
        with store.connect() as con:
            result = con.execute(f"SELECT id, embedding FROM images WHERE {LIVE} AND labels IS NULL AND id > ? "
                                 "ORDER BY id LIMIT ?", [last, LABEL_CHUNK]).fetchnumpy()
        ids = np.asarray(result["id"], np.int64)
        if not len(ids):
            break
        best, probs = top_labels(np.stack(result["embedding"]), head)
        names = [[head.names[i] for i in row] for row in best.tolist()]
        with store.transaction() as tx:
            tx.set_labels(ids, names, probs.astype(np.float32))
        done, last = done + len(ids), int(ids[-1])
        if progress:
            progress("labels", done, todo)
    return done
