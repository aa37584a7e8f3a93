"""ImageIndex: open a store read-only and find the images most like a query."""

from __future__ import annotations

import dataclasses
import io
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..indexer.errors import ConfigError, ImageLoadError, StoreMismatchError
from ..indexer.extensions import has_video_extension
from ..indexer.imaging.formats import readable_formats
from ..indexer.imaging.images import load_image, read_image_bytes, to_rgb
from ..indexer.locations import is_within
from ..indexer.model.precision import reuse_precision_check
from ..indexer.model.weights import weights_from_manifest
from ..indexer.store.ann import search_parameters
from ..indexer.store.store import LIVE, MTIME, Store, disk_path, encode_path, open_store
from ..indexer.store.vectors import open_vector_index, refresh_vector_index
from .collection_map import MapPoint, map_positions, uniqueness
from .explain import Explanation, explain_tokens
from .filters import matching_ids
from .labels import label_matches, resolve_label
from .pairs import find_pairs
from .region import Box, region_of
from .video_frames import FrameTable, best_frames, load_frames, sample_video

__all__ = ["ImageIndex", "Hit", "to_records", "to_dataframe", "combine_queries", "NEGATIVE_WEIGHT"]

COLLAPSE_POOL = 4  # a collapsed search looks this many times deeper, to still fill k after folding

# How hard the negatives push away: half the pull of the positives, so a negative that shares
# the positives' subject lowers its look-alikes without turning the query into its opposite.
NEGATIVE_WEIGHT = 0.5


def combine_queries(positives: np.ndarray, negatives: np.ndarray | None = None) -> np.ndarray:
    """mean(positives) - NEGATIVE_WEIGHT * mean(negatives), as a unit vector."""
    vector = positives.mean(axis=0)
    if negatives is not None and len(negatives):
        vector = vector - NEGATIVE_WEIGHT * negatives.mean(axis=0)
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        raise ConfigError("the positive and negative queries cancel out: drop a negative")
    return (vector / norm).astype(np.float32)

ENCODE_BATCH = 16
PATH_CHOICES = 50
# What a Hit carries of its row, by name.
_HIT_COLUMNS = (f"path, width, height, format, size, {MTIME} AS mtime, captured_at, camera, "
                "mtime_ns, path_bytes, root, embedding, labels, rating, pick, color_label, keywords, companion_files, "
                "kind, duration")


@dataclass(frozen=True)
class Hit:
    id: int
    path: str
    score: float  # cosine similarity, computed from the stored embedding
    width: int | None
    height: int | None
    format: str | None
    size: int | None
    mtime: datetime | None
    captured_at: datetime | None
    camera: str | None
    stale: bool = False  # the file was deleted or changed after indexing
    companions: tuple[str, ...] = ()  # the other files of the same shot (RAW+JPEG pairs)
    copies: tuple[str, ...] = ()  # with collapse: lower hits that are near-duplicates of this one
    labels: tuple[str, ...] = ()  # the model head's top-5 classes, best first (empty: not labelled)
    # the photographer's records from XMP (indexer.records): None / () where nothing says
    rating: int | None = None
    pick: str | None = None
    color_label: str | None = None
    keywords: tuple[str, ...] = ()
    companion_files: tuple[str, ...] = ()  # sidecars and edit files that belong to it
    kind: str = "image"  # or "video": then `score` is its best frame's and `time` that frame's
    time: float | None = None  # seconds into the video of the frame that matched best
    duration: float | None = None  # a video's length in seconds

    def to_record(self) -> dict:
        return asdict(self)


def to_records(hits: Iterable[Hit]) -> list[dict]:
    return [hit.to_record() for hit in hits]


def to_dataframe(hits: Iterable[Hit]):
    """Hits as a pandas DataFrame (pandas comes with gradio)."""
    import pandas as pd

    return pd.DataFrame(to_records(hits), columns=list(Hit.__dataclass_fields__))


class ImageIndex:
    """A read-only view of a store: its vectors in memory, its model loaded on demand.

    `ImageIndex.open(store)` takes the model, weights and preprocessing from the store.
    Thread-safe for searches; `refresh()` picks up what an indexer committed since.
    """

    def __init__(self, store: Store, manifest: dict, vectors, *, device: str = "auto", encoder=None):
        self.store, self.manifest, self.vectors = store, manifest, vectors
        self._device = device
        self._encoder = encoder
        # One model call at a time: torch already uses every core, and concurrent calls from
        # a server's handlers would only oversubscribe them.
        self._model_lock = threading.RLock()
        self._pairs: tuple[int, dict[int, tuple[int, ...]]] | None = None  # (generation, pairs)
        self._frames: tuple[int, FrameTable | None] | None = None  # (generation, frames of live videos)
        self._frames_lock = threading.Lock()

    @classmethod
    def open(cls, store_dir: str | os.PathLike | None = None, *, device: str = "auto",
             encoder=None) -> ImageIndex:
        store = open_store(store_dir)
        store.require()
        store.require_current_schema()
        manifest = store.manifest()
        return cls(store, manifest, open_vector_index(store, manifest), device=device, encoder=encoder)

    def __len__(self) -> int:
        return self.vectors.count

    def refresh(self) -> bool:
        """Catch up with the store's latest commit; True when something changed."""
        manifest = self.store.manifest()
        if manifest.get("generation") == self.manifest.get("generation"):
            return False
        self.vectors = refresh_vector_index(self.store, self.vectors, manifest)
        self.manifest = manifest
        return True

    # ---- what the store holds ----

    def info(self) -> dict:
        """Counts and facts of the store; index facts from the vectors already in memory."""
        counts = self.store.counts()
        return {
            "images": counts["images"],  # photos
            "videos": counts["videos"],
            "frames": counts["frames"],  # the videos' sampled frames (see docs/videos.md)
            "vectors": self.vectors.count,
            "failed": counts["failed"],
            "failures": counts["failures"],
            "quarantined": counts["quarantined"],  # moved aside by `dupes --apply`; `--undo` brings them back
            "labelled": counts["labelled"],  # images with their top-5 ImageNet classes
            "labels": self.manifest.get("label_head", "none (the weights carry no ImageNet-1k head)"),
            "model": self.manifest["model_name"],
            "weights": self.manifest["weights_source"],
            "precision": self.manifest.get("precision"),  # what indexing ran the model at
            "precision_min_cosine": self.manifest.get("precision_min_cosine"),  # its first batch vs fp32
            "model_graph": self.manifest.get("model_graph"),  # "compiled" (the AOTInductor graph) or "eager"
            "index_type": self.vectors.index_type,
            "index_recall_at_10": self.vectors.choice.recall,
            "index_params": self.vectors.choice.params,
            "index_on_disk": self.vectors.choice.on_disk,  # lists mapped from a data file: past the memory budget
            "dim": self.manifest["dim"],
            "metric": self.manifest["metric"],
            "store": str(self.store.dir),
            "generation": self.manifest["generation"],
            "index_repair": self.vectors.repair,
            "formats": readable_formats(),  # what this installation can read
        }

    def failures(self, limit: int = 1000) -> list[tuple[str, str, str]]:
        """(path, reason, detail) of failed files, newest first."""
        rows = self.store.records("path, error, error_detail", "status = 'failed'",
                                  order="indexed_at DESC, path", limit=limit)
        return [(r["path"], r["error"], r["error_detail"]) for r in rows]

    def find_paths(self, text: str, limit: int = PATH_CHOICES) -> list[str]:
        """Indexed paths containing `text` (case-insensitive), in path order."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self.store.records("path", f"{LIVE} AND path ILIKE ? ESCAPE '\\'", [pattern],
                                  order="path", limit=limit)
        return [r["path"] for r in rows]

    def describe(self, ids) -> dict[int, dict]:
        """Metadata of these images by id: path, width, height, size, mtime_ns, date (capture
        time, else modification time, as text), camera, and the photographer's records: rating,
        pick, color_label, keywords and companion_files (None and [] where nothing is recorded),
        the measured jpeg_quality, sharpness, detail and exposure (clipped fraction), and kind
        ('image' or 'video') with a video's duration, fps, codec and bitrate (None for photos)."""
        rows = self.store.records_by_id(
            f"path, width, height, size, mtime_ns, coalesce(captured_at, {MTIME}) AS date, camera, rating, pick, "
            "color_label, coalesce(keywords, []::VARCHAR[]) AS keywords, "
            "coalesce(companion_files, []::VARCHAR[]) AS companion_files, jpeg_quality, sharpness, detail, "
            "clipped_shadows + clipped_highlights AS exposure, kind, duration, fps, codec, bitrate", ids)
        for row in rows.values():
            row["date"] = str(row["date"])[:19] if row["date"] else None
        return rows

    def labels_of(self, ids) -> dict[int, list[dict]]:
        """Each labelled row's top-5 classes, best first: [{"label", "probability"}]."""
        rows = self.store.records_by_id("labels, label_probs", ids)
        return {i: [{"label": name, "probability": float(p)} for name, p in zip(r["labels"], r["label_probs"],
                                                                                  strict=False)]
                for i, r in rows.items() if r["labels"]}

    def describe_paths(self, paths) -> dict[str, dict]:
        """Size and mtime_ns of these indexed paths, keyed by path."""
        wanted = [encode_path(p)[0] for p in paths]
        rows = self.store.records("path, size, mtime_ns", f"{LIVE} AND list_contains(?, path)", [wanted])
        return {r["path"]: r for r in rows}

    def roots(self) -> list[str]:
        """The folders this store was built from."""
        return self.store.roots()

    def frames(self) -> FrameTable | None:
        """The frames of live videos as of the loaded generation (None: no videos)."""
        generation = int(self.manifest.get("generation", 0))
        with self._frames_lock:
            if self._frames is None or self._frames[0] != generation:
                self._frames = (generation, load_frames(self.store))
            return self._frames[1]

    def pairs(self) -> dict[int, tuple[int, ...]]:
        """id -> ids of the other files of its shot (RAW+JPEG pairs), as of the loaded generation."""
        generation = int(self.manifest.get("generation", 0))
        if self._pairs is None or self._pairs[0] != generation:
            self._pairs = (generation, find_pairs(self.store))
        return self._pairs[1]

    @property
    def encoder(self):
        """The store's own model and preprocessing, loaded on first use."""
        with self._model_lock:
            return self._load_encoder()

    def _load_encoder(self):
        if self._encoder is None:
            from ..indexer.model.encoder import load_encoder

            encoder = load_encoder(weights_from_manifest(self.manifest), device=self._device)
            if encoder.weights.fingerprint != self.manifest["weights_fingerprint"]:
                raise StoreMismatchError(
                    f"the weights at {self.manifest['weights_source']} are not the ones the store was built with"
                )
            # Queries run at the precision the store's images were checked at on this CPU, without
            # another fp32 pass: the query's vector is then made as the stored ones were.
            reuse_precision_check(self.manifest, encoder)
            self._encoder = encoder
        return self._encoder

    def map(self, method: str = "auto") -> list[MapPoint]:
        """Every live image's place on a 2-D map of the collection (UMAP of the embeddings, or
        PCA for huge stores or without umap-learn; see search.collection_map), cached beside
        the store until the collection changes."""
        ids, xy, _ = map_positions(self.store, int(self.manifest.get("generation", 0)), method)
        paths = {r["id"]: r["path"] for r in self.store.records("id, path", LIVE)}
        return [MapPoint(int(i), paths[int(i)], float(x), float(y))
                for i, (x, y) in zip(ids.tolist(), xy.tolist(), strict=True) if int(i) in paths]

    def outliers(self, k: int | None = None) -> list[tuple[int, str, float]]:
        """(id, path, uniqueness) of the images least like any other, most unusual first."""
        ids, scores = uniqueness(self)
        order = np.lexsort((ids, -scores))[:k]
        paths = {r["id"]: r["path"] for r in self.store.records("id, path", LIVE)}
        return [(int(ids[i]), paths[int(ids[i])], float(scores[i])) for i in order if int(ids[i]) in paths]

    # ---- queries ----

    def search(self, query, k: int = 10, where: str | None = None, min_score: float | None = None,
               box: Box | None = None, collapse: bool = False, label: str | None = None,
               negative: Sequence = ()) -> list[Hit]:
        """The k images most like `query`: a file path, an indexed path or id, a PIL image,
        bytes, an HxWx3 uint8 array, or a vector; a list of them with optional `negative` ones
        searches them together (see search_combined). `box` (x0, y0, x1, y1, pixels of the
        upright image) searches with that region of the query image only. `collapse` folds hits
        that are near-duplicates of a higher hit into it (their paths in `copies`). `label` keeps
        images whose top-5 holds that class (any synonym)."""
        if isinstance(query, (list, tuple)) or len(negative):
            positives = list(query) if isinstance(query, (list, tuple)) else [query]
            if box is not None:
                positives = [self.region(q, box) for q in positives]
            query = combine_queries(self.embed_many(positives),
                                    self.embed_many(list(negative)) if len(negative) else None)
            box = None
        if box is not None:
            query = self.region(query, box)
        return self.search_many([query], k=k, where=where, min_score=min_score, label=label, collapse=collapse)[0]

    def search_label(self, name: str, k: int | None = None, where: str | None = None) -> list[Hit]:
        """The images whose top-5 labels hold the class `name` (any of its synonyms, any case),
        best probability first; each hit's score is that probability. A near miss is refused
        with suggestions."""
        ids, probs = label_matches(self.store, resolve_label(self.store, name))
        if where is not None:
            keep = np.isin(ids, self._allowed(where, None))
            ids, probs = ids[keep], probs[keep]
        rows = self.store.records_by_id(_HIT_COLUMNS, ids)
        hits = [self._hit(rows[i], float(p)) for i, p in zip(ids.tolist(), probs.tolist(), strict=True)
                if i in rows and is_within(rows[i]["path"], rows[i]["root"])]
        return self._merge_pairs(hits)[:k]

    def _allowed(self, where: str | None, label: str | None) -> np.ndarray | None:
        """Ids that pass `where` and `label` (None: no filter)."""
        allowed = None
        if where is not None:
            with self.store.connect() as con:  # sandboxed: no file access for user SQL
                allowed = matching_ids(con, where)
        if label is not None:
            labelled = label_matches(self.store, resolve_label(self.store, label))[0]
            allowed = np.sort(labelled) if allowed is None else np.intersect1d(allowed, labelled)
        return allowed

    def collapse(self, hits: list[Hit]) -> list[Hit]:
        """Each hit whose embedding is a near-duplicate (the store's near threshold) of a higher
        kept hit folds into that one, best first."""
        from .thresholds import thresholds

        near = thresholds(self.store)[0]
        found, vectors = self.store.embeddings(np.array([h.id for h in hits], np.int64))
        vector_of = dict(zip(found.tolist(), vectors, strict=True))
        kept: list[Hit] = []
        copies: list[list[str]] = []
        for hit in hits:
            vector = vector_of.get(hit.id)
            home = next((n for n, k in enumerate(kept) if vector is not None and k.id in vector_of
                         and float(vector @ vector_of[k.id]) >= near), None)
            if home is None:
                kept.append(hit)
                copies.append([])
            else:
                copies[home].append(hit.path)
        return [dataclasses.replace(h, copies=tuple(c)) for h, c in zip(kept, copies, strict=True)]

    def search_combined(self, positives: Sequence, negatives: Sequence = (), k: int = 10,
                        where: str | None = None, min_score: float | None = None,
                        label: str | None = None) -> list[Hit]:
        """More like these, less like those: one query vector, the normalised mean of the
        positives' unit embeddings minus NEGATIVE_WEIGHT times the mean of the negatives'
        (Rocchio's relevance feedback), searched like any vector."""
        if not positives:
            raise ConfigError("a combined search needs at least one positive query")
        return self.search(combine_queries(self.embed_many(list(positives)),
                                           self.embed_many(list(negatives)) if negatives else None),
                           k=k, where=where, min_score=min_score, label=label)

    def explain(self, query, target) -> Explanation:
        """Why `target` is like `query`: a grid over the target (the model's 16x16 patches) of
        how well each region matches anything in the query, with the cells' place in the
        target's pixels. Each is a path, an indexed id, bytes, a PIL image or an array."""
        import torch

        images = [self.image_and_size(query), self.image_and_size(target)]
        batch = torch.stack([torch.as_tensor(self.encoder.preprocess(image)) for image, _ in images])
        with self._model_lock:
            try:
                vectors, tokens = self.encoder.encode_with_patches(batch)
            except NotImplementedError as e:
                raise ConfigError(f"cannot explain with this model: {e}") from e
        return explain_tokens(tokens[0], tokens[1], float(vectors[0] @ vectors[1]), images[1][1],
                              getattr(self.encoder, "data_config", None))

    def image_and_size(self, query):
        """An RGB image as the model takes it, and the upright size of the original."""
        if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
            query = self._indexed_path(int(query))
        if isinstance(query, np.ndarray) and query.ndim == 1:
            raise ConfigError("explain needs images, not vectors")
        if isinstance(query, (str, Path)):
            _require_file(query)
        if isinstance(query, (str, Path, bytes, bytearray, memoryview)):
            data = bytes(query) if not isinstance(query, (str, Path)) else read_image_bytes(str(query))
            try:
                loaded = load_image(data, draft_size=self.encoder.draft_size)
            except ImageLoadError as e:
                raise ConfigError(f"image unusable: {e}") from e
            return loaded.image, (loaded.info.width, loaded.info.height)
        image = self._to_image(query)
        return image, image.size

    def _indexed_path(self, row_id: int) -> str:
        """The file of an indexed photo, for what reads its pixels (explain, a region)."""
        rows = self.store.records("path, path_bytes, kind", f"{LIVE} AND id = ?", [row_id])
        if not rows:
            raise ConfigError(f"no indexed image has id {row_id}")
        if rows[0]["kind"] == "video":
            raise ConfigError(f"id {row_id} is a video: explain and region search take photos "
                              "(search with the video itself, or with a still exported from it)")
        return disk_path(rows[0])

    def region(self, query, box: Box):
        """The RGB crop `box` of a query image (a path, an indexed id, bytes, an image, an array)."""
        if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
            query = self._indexed_path(int(query))
        elif isinstance(query, np.ndarray) and query.ndim == 1:
            raise ConfigError("a box needs an image, not a vector")
        elif isinstance(query, (str, Path)):
            _require_file(query)
        return region_of(query, box, self.encoder.draft_size)

    def search_many(self, queries: Sequence, k: int = 10, where: str | None = None,
                    min_score: float | None = None, label: str | None = None,
                    collapse: bool = False) -> list[list[Hit]]:
        """Like search() for each query; images go through the model in batches. `collapse`
        folds each query's near-duplicate hits (see collapse), from a pool deep enough to fill k."""
        k = int(k)
        depth = COLLAPSE_POOL * k if collapse else k
        vectors = self.embed_many(queries)
        allowed = self._allowed(where, label)
        candidates = self._candidates(vectors, depth, allowed)
        frames = self.frames() if depth > 0 and (allowed is None or len(allowed)) else None
        results = []
        for query, ids, vector in zip(queries, candidates, vectors, strict=False):
            # An image query meets videos frame by frame; a video query compares whole videos.
            best = best_frames(frames, vector, allowed) if frames is not None and not self._is_video(query) else None
            if best:
                top = sorted(best, key=lambda i: -best[i][0])[:depth]
                ids = np.union1d(ids, np.asarray(top, np.int64))
            results.append(self._hits(ids, vector, depth, min_score, best))
        return [self.collapse(hits)[:k] for hits in results] if collapse else results

    def _is_video(self, query) -> bool:
        """Whether a query is a video: a video file, or the id of an indexed one."""
        if isinstance(query, (str, Path)):
            return has_video_extension(str(query))
        if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
            rows = self.store.records_by_id("kind", [int(query)])
            return bool(rows) and rows[int(query)]["kind"] == "video"
        return False

    def embed(self, query) -> np.ndarray:
        return self.embed_many([query])[0]

    def embed_many(self, queries: Sequence) -> np.ndarray:
        """Unit vectors for queries; stored embeddings are reused for indexed, unchanged files."""
        dim = int(self.manifest["dim"])
        result = np.zeros((len(queries), dim), np.float32)
        to_encode: list[tuple[int, object]] = []
        for position, query in enumerate(queries):
            vector = self._known_vector(query)
            if vector is not None:
                result[position] = vector
            elif isinstance(query, (str, Path)) and has_video_extension(str(query)):
                result[position] = self._video_vector(str(query))
            else:
                to_encode.append((position, self._to_image(query)))
        for start in range(0, len(to_encode), ENCODE_BATCH):
            chunk = to_encode[start:start + ENCODE_BATCH]
            import torch

            batch = torch.stack([torch.as_tensor(self.encoder.preprocess(image)) for _, image in chunk])
            with self._model_lock:
                vectors = self.encoder.encode(batch)
            for (position, _), vector in zip(chunk, vectors, strict=False):
                result[position] = vector
        return result

    def _video_vector(self, path: str) -> np.ndarray:
        try:
            with self._model_lock:
                return sample_video(path, self.encoder)
        except ImageLoadError as e:
            raise ConfigError(f"query video unusable: {e}") from e

    def _known_vector(self, query) -> np.ndarray | None:
        if isinstance(query, np.ndarray) and query.ndim == 1:
            if query.shape[0] != self.manifest["dim"]:
                raise ConfigError(f"query vector has {query.shape[0]} dims, the store has {self.manifest['dim']}")
            vector = query.astype(np.float32)
            return vector / max(float(np.linalg.norm(vector)), 1e-12)
        if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
            sql, param = "id = ?", int(query)
        elif isinstance(query, (str, Path)):
            _require_file(query)
            sql, param = "path = ?", encode_path(os.path.abspath(query))[0]
        else:
            return None
        rows = self.store.records("embedding, size, mtime_ns, path, path_bytes", f"{LIVE} AND {sql}", [param])
        if not rows:
            if isinstance(query, (int, np.integer)):
                raise ConfigError(f"no indexed image has id {query}")
            return None
        row = rows[0]
        if isinstance(query, (str, Path)) and not _unchanged(disk_path(row), row["size"], row["mtime_ns"]):
            return None  # the file was edited since indexing: embed what is on disk now
        return np.asarray(row["embedding"], dtype=np.float32)

    def _to_image(self, query):
        from PIL import Image

        if isinstance(query, Image.Image):
            return to_rgb(query)
        if isinstance(query, np.ndarray):
            if query.ndim != 3 or query.shape[2] != 3:
                raise ConfigError(f"an array query must be HxWx3, got shape {query.shape}")
            return Image.fromarray(np.ascontiguousarray(query.astype(np.uint8)), "RGB")
        if isinstance(query, (bytes, bytearray, memoryview)):
            data = bytes(query)
        elif isinstance(query, (str, Path)):
            data = read_image_bytes(str(query))
        elif isinstance(query, io.IOBase):
            data = query.read()
        else:
            raise ConfigError(f"cannot search with a {type(query).__name__}")
        try:
            return load_image(data, draft_size=self.encoder.draft_size).image
        except ImageLoadError as e:
            raise ConfigError(f"query image unusable: {e}") from e

    # ---- vector search ----

    def _candidates(self, vectors: np.ndarray, k: int, allowed: np.ndarray | None) -> list[np.ndarray]:
        """Candidate ids per query. Flat indexes are exact; IVF ones fetch extra candidates for
        exact re-ranking, and a filter is pushed into FAISS as an id selector."""
        if (allowed is not None and len(allowed) == 0) or k <= 0 or len(self) == 0:
            return [np.zeros(0, np.int64) for _ in vectors]
        exact_index = self.vectors.index_type == "flat"
        # Extra candidates: ties (identical copies) at the k-th place then resolve by id, and
        # approximate scores get room for exact re-ranking.
        # Room too for the second file of RAW+JPEG pairs, which merge into one hit.
        fetch = 2 * k + 8 if exact_index else max(4 * k, 50)
        params = search_parameters(self.vectors.index, self.vectors.choice, allowed=allowed)
        _, ids = self.vectors.index.search(vectors, min(fetch, len(self)), params=params)
        return [row[row >= 0] for row in ids]

    def _hits(self, ids: np.ndarray, vector: np.ndarray, k: int, min_score: float | None,
              frames: dict[int, tuple[float, float]] | None = None) -> list[Hit]:
        """Rows for candidate ids, scored exactly against their stored embeddings, best first;
        a video in `frames` scores as its best frame, at that frame's time."""
        if not len(ids):
            return []
        rows = self.store.records_by_id(_HIT_COLUMNS, ids)
        scored = []
        for r in rows.values():
            if not is_within(r["path"], r["root"]):
                continue  # never a path outside the indexed roots
            score, time = float(np.dot(np.asarray(r["embedding"], np.float32), vector)), None
            if frames and r["id"] in frames:
                score, time = frames[r["id"]]
            if min_score is not None and score < min_score:
                continue
            scored.append(self._hit(r, score, time))
        scored.sort(key=lambda h: (-h.score, h.id))
        return self._merge_pairs(scored)[:k]

    @staticmethod
    def _hit(r: dict, score: float, time: float | None = None) -> Hit:
        stale = not _unchanged(disk_path(r), r["size"], r["mtime_ns"])
        return Hit(r["id"], r["path"], score, r["width"], r["height"], r["format"], r["size"], r["mtime"],
                   r["captured_at"], r["camera"], stale, labels=tuple(r["labels"] or ()), rating=r["rating"],
                   pick=r["pick"], color_label=r["color_label"], keywords=tuple(r["keywords"] or ()),
                   companion_files=tuple(r["companion_files"] or ()), kind=r["kind"] or "image", time=time,
                   duration=r["duration"])

    def _merge_pairs(self, hits: list[Hit]) -> list[Hit]:
        """One hit per shot: a RAW+JPEG pair shows as its better-scoring file, naming the other."""
        pairs = self.pairs()
        if not pairs or not any(h.id in pairs for h in hits):
            return hits
        partner_ids = {i for h in hits for i in pairs.get(h.id, ())}
        paths = {i: r["path"] for i, r in self.store.records_by_id("path", partner_ids).items()}
        merged, shown = [], set()
        for hit in hits:
            if hit.id in shown:
                continue
            partners = pairs.get(hit.id, ())
            shown.update(partners)
            companions = tuple(paths[i] for i in partners if i in paths)
            merged.append(dataclasses.replace(hit, companions=companions) if companions else hit)
        return merged


def _unchanged(path: str, size: int, mtime_ns: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns == mtime_ns


def _require_file(path: str | Path) -> None:
    """A query path that is not there is the user's to fix (exit 2), whatever asks for it."""
    if not os.path.exists(path):
        raise ConfigError(f"no such file: {path}")
