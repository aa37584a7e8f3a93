"""The prepared model, cached per user: what a CPU run needs to embed without importing timm.

The first CPU run with given weights builds timm's model as always, then saves its state dict
(safetensors: tensors only, nothing executable), the data config, the weights' source and
fingerprint, the ImageNet head and its class names. Later runs with the same weights (same
random seed, or the same file by path, size and mtime, or the same cached hub download) build
indexer.model.vit.ViT from it: `vitsearch search FILE` then pays for torch, not for timm.

Where: $VITSEARCH_CACHE, else $XDG_CACHE_HOME/vitsearch, else ~/.cache/vitsearch; `models/`
holds one folder per weights (~160 MB each). Deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..locations import CACHE_ENV, cache_root
from .weights import RANDOM, RANDOM_SEED, WeightsInfo

__all__ = ["Prepared", "load_prepared", "save_prepared", "cached_data_config", "cache_root", "CACHE_ENV"]

FORMAT = 1  # bump when what is saved changes
_STATE, _META = "model.safetensors", "meta.json"


@dataclass
class Prepared:
    model: object  # indexer.model.vit.ViT, eval mode, on the CPU
    info: WeightsInfo
    data_config: dict
    head: tuple | None  # (weight, bias) tensors of the ImageNet-1k classifier
    names: list[str] | None  # its class descriptions


def _folder(weights: str | None, model_name: str) -> Path | None:
    """The cache folder of these weights, or None when they cannot be identified cheaply
    (without importing torch: a run looks here before the model loads)."""
    if weights == RANDOM:
        source = f"random:{RANDOM_SEED}"
    elif weights:
        try:
            st = os.stat(weights)
        except OSError:
            return None  # the slow path says what is wrong with the file
        source = f"file:{os.path.abspath(weights)}:{st.st_size}:{st.st_mtime_ns}"
    else:
        hub_file = _hub_file(model_name)
        if hub_file is None:
            return None
        st = os.stat(hub_file)
        source = f"pretrained:{hub_file}:{st.st_size}:{st.st_mtime_ns}"
    versions = []
    for package in ("timm", "torch"):
        try:
            versions.append(metadata.version(package))
        except metadata.PackageNotFoundError:
            versions.append("?")
    key = json.dumps([FORMAT, model_name, source, *versions])
    return cache_root() / "models" / hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def _hub_file(model_name: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(f"timm/{model_name}", name)
        if isinstance(found, str):
            return found
    return None


def cached_data_config(weights: str | None, model_name: str) -> dict | None:
    """The data config of these weights' cached model, read without torch; None if not cached."""
    folder = _folder(weights, model_name)
    try:
        meta = json.loads((folder / _META).read_text()) if folder is not None else None
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not (folder / _STATE).exists():
        return None  # a damaged cache is a miss, as in load_prepared
    return meta.get("data_config")


def load_prepared(weights: str | None, model_name: str) -> Prepared | None:
    """The cached model of these weights, or None (not cached yet, or unreadable: rebuilt)."""
    folder = _folder(weights, model_name)
    if folder is None or not (folder / _META).exists():
        return None
    try:
        from safetensors.torch import load_file

        from .vit import VIT_CONFIGS, ViT

        meta = json.loads((folder / _META).read_text())
        if meta.get("format") != FORMAT or model_name.partition(".")[0] not in VIT_CONFIGS:
            return None
        state = load_file(str(folder / _STATE))
        head = (state.pop("head.weight"), state.pop("head.bias")) if "head.weight" in state else None
        model = ViT.for_model(model_name)
        model.load_state_dict(state, strict=True, assign=True)
    except Exception:  # noqa: BLE001 - a damaged cache is a cache miss, never an error
        return None
    info = WeightsInfo(meta["source"], meta["fingerprint"])
    return Prepared(model.eval(), info, meta["data_config"], head, meta.get("names"))


def save_prepared(weights: str | None, model_name: str, model, info: WeightsInfo, data_config: dict,
                  head: tuple | None, names: list[str] | None) -> bool:
    """Cache a model timm built (written aside, then renamed into place); False if it could not be."""
    from .vit import VIT_CONFIGS

    if model_name.partition(".")[0] not in VIT_CONFIGS:
        return False
    folder = _folder(weights, model_name)
    if folder is None:
        return False
    staging = None
    try:
        from safetensors.torch import save_file

        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        if head is not None:
            state.update({"head.weight": head[0].contiguous(), "head.bias": head[1].contiguous()})
        save_file(state, str(staging / _STATE))
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items()}
        (staging / _META).write_text(json.dumps({"format": FORMAT, "model_name": model_name, "source": info.source,
                                                 "fingerprint": info.fingerprint, "data_config": config,
                                                 "names": names}))
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
        return True
    except OSError:  # a full or read-only disk: the next run builds timm's model again
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        return False
