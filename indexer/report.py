"""What an indexing run did: counts, timings and the files it could not index."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model.precision import PrecisionCheck

# progress(phase, done, total): a run reports each phase of its work as it goes. Phases, in order:
# "index" (files read, embedded and committed), "videos" (videos hashed, sampled and embedded),
# "records" (XMP of images whose sidecars changed),
# "signatures" (older rows signed), "labels".
Progress = Callable[[str, int, int], None]
PHASES = ("index", "videos", "records", "signatures", "labels")

__all__ = ["IndexReport", "FileFailure", "Progress", "PHASES"]


@dataclass(frozen=True)
class FileFailure:
    path: str
    reason: str
    detail: str


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    failed: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0
    embedded: int = 0  # images and videos given a fresh embedding
    embedded_videos: int = 0  # videos sampled into frames and embedded
    frames: int = 0  # the frames those videos were embedded from
    video_seconds: float = 0.0  # wall time spent on videos (hashing, decoding, embedding)
    signed: int = 0  # older rows given their duplicate signatures (a decode, no model pass)
    records_read: int = 0  # images whose XMP records were read again without the model (a sidecar changed)
    record_notes: list[tuple[str, str]] = field(default_factory=list)  # (path, why some XMP was not read)
    labelled: int = 0  # rows given their top-5 classes (from stored embeddings: no model pass)
    sent_to_cluster: int = 0  # --engine ray: files the cluster decoded and embedded
    nodes: set[str] = field(default_factory=set)  # --engine ray: nodes whose actors embedded
    decode_nodes: set[str] = field(default_factory=set)  # --engine ray: nodes that decoded
    worker_precisions: set[str] = field(default_factory=set)  # --engine ray: what the actors ran at
    gpu_ids: set[str] = field(default_factory=set)  # --engine ray: GPU ids Ray gave those actors
    precision: str | None = None  # what the model ran at (bf16, int8, fp32, fp16)
    precision_check: PrecisionCheck | None = None  # the first batch's parity check, when this run made one
    failures: list[FileFailure] = field(default_factory=list)
    changes: list[tuple[str, str]] = field(default_factory=list)  # (added|updated|moved|removed, path)
    repair: str | None = None
    store: str = ""

    SUMMARY_KEYS = ("added", "updated", "unchanged", "moved", "removed", "failed", "seconds", "images_per_s")

    def summary(self) -> dict:
        """The run's figures under exactly the documented keys."""
        values = asdict(self)
        return {k: values[k] for k in self.SUMMARY_KEYS}
