"""What runs on the Ray cluster: reading and decoding as CPU tasks (the local engine's safe
loader, at the same reduced JPEG scale, with signatures), embedding in an actor pool that runs the
encoder's own transform and model (one actor per GPU, or CPU actors with several threads each).

Decode tasks import no torch or timm (seven CPU-seconds per worker process here): they ship the
decoded RGB pixels, and the actors, which load the model anyway, apply the transform. Rows carry
their fixed ids; results stream back to the driver."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ..errors import ImageLoadError
from ..imaging.images import load_image, read_image_bytes

__all__ = ["decode_batch", "Embedder", "FACT_COLUMNS"]

FACT_COLUMNS = ("width", "height", "format", "captured_at", "camera", "warnings", "pixel_hash", "orientation_hash")


def decode_batch(batch: dict, *, draft_size: int | None) -> dict:
    """Read, hash and decode each file of the batch. A bad file becomes a row with a reason (and
    an empty image the embedder skips), never an exception that fails the job."""
    n = len(batch["id"])
    pixels = np.empty(n, object)
    hashes, facts, reasons, details = [""] * n, ["{}"] * n, [""] * n, [""] * n
    for i, path in enumerate(batch["path"]):
        try:
            data = read_image_bytes(str(path))
            hashes[i] = hashlib.blake2b(data, digest_size=16).hexdigest()
            loaded = load_image(data, draft_size=draft_size, signature=True)
            info, signature = loaded.info, loaded.signature
            pixels[i] = np.asarray(loaded.image, np.uint8)
            facts[i] = json.dumps({
                "width": info.width, "height": info.height, "format": info.format,
                "captured_at": info.captured_at.isoformat() if info.captured_at else None,
                "camera": info.camera, "warnings": "; ".join(info.warnings) or None,
                "pixel_hash": signature.pixel_hash, "orientation_hash": signature.orientation_hash,
            })
        except ImageLoadError as e:
            reasons[i], details[i] = e.reason, e.detail
        except Exception as e:  # noqa: BLE001 - one bad file must never stop the job
            reasons[i], details[i] = "internal", f"{type(e).__name__}: {e}"
        if reasons[i]:
            pixels[i] = np.zeros((1, 1, 3), np.uint8)
    import ray

    out = {key: np.asarray(batch[key]) for key in batch}
    out.update(decode_node=np.array([ray.get_runtime_context().get_node_id()] * n, object),
               content_hash=np.array(hashes, object), facts=np.array(facts, object),
               reason=np.array(reasons, object), detail=np.array(details, object), pixels=pixels)
    return out


class Embedder:
    """An actor holding the model. The weights come from the driver in the recipe (never from the
    hub); a GPU is used when Ray assigned one and torch sees it, else the CPU with `threads`."""

    def __init__(self, recipe, threads: int):
        import ray
        import torch

        torch.set_num_threads(max(1, threads))  # Ray sets OMP_NUM_THREADS to the actor's CPUs; be explicit
        gpus = ray.get_gpu_ids()
        device = "cuda" if gpus and torch.cuda.is_available() else "cpu"
        if isinstance(recipe, list):  # [ObjectRef]: the weights, from the object store
            recipe = ray.get(recipe[0])
        self.encoder = recipe.build(device)
        self.node = ray.get_runtime_context().get_node_id()
        self.gpus = ",".join(str(g) for g in gpus)

    def __call__(self, batch: dict) -> dict:
        import torch

        reasons = np.asarray(batch["reason"], object).copy()
        details = np.asarray(batch["detail"], object).copy()
        ok = reasons == ""
        vectors = np.zeros((len(reasons), self.encoder.dim), np.float32)
        if ok.any():
            from PIL import Image

            inputs = [torch.as_tensor(self.encoder.preprocess(Image.fromarray(np.asarray(batch["pixels"][n]), "RGB")))
                      for n in np.flatnonzero(ok)]
            vectors[ok] = self.encoder.encode(torch.stack(inputs))
        bad = ok & ~np.isfinite(vectors).all(axis=1)
        reasons[bad], details[bad] = "bad_embedding", "the model produced NaN or Inf"
        out = {key: value for key, value in batch.items() if key != "pixels"}
        out.update(reason=reasons, detail=details, embedding=vectors,
                   node=np.array([self.node] * len(reasons), object), gpus=np.array([self.gpus] * len(reasons), object),
                   precision=np.array([self.encoder.precision_used] * len(reasons), object))
        return out
