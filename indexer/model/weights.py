"""Model weights: a local file, timm's pretrained download, or seeded random for tests."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

from ..errors import WeightsUnavailableError

__all__ = ["WeightsInfo", "build_model", "load_weights", "LoadedWeights", "weights_from_manifest", "RANDOM",
           "MODEL_NAME"]

MODEL_NAME = "vit_medium_patch16_reg4_gap_256.sbb_in12k_ft_in1k"
RANDOM = "random"
RANDOM_SEED = 0
_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # "pretrained:<hub id>", "file:<path>" or "random:seed=0"
    fingerprint: str  # digest of every parameter: equal weights, equal fingerprint

    @property
    def is_random(self) -> bool:
        return self.source.startswith("random")


@dataclass(frozen=True)
class LoadedWeights:
    model: object  # the timm model without its classifier: what embeds
    info: WeightsInfo
    head: tuple | None  # (weight, bias) of the ImageNet-1k classifier, when the weights carry one


def build_model(weights: str | None, model_name: str = MODEL_NAME):
    """Create the timm model (no classifier) with weights from `weights`: (model, WeightsInfo).

    `weights` is a file path, "random", or None for timm's pretrained download (cached).
    """
    loaded = load_weights(weights, model_name)
    return loaded.model, loaded.info


def load_weights(weights: str | None, model_name: str = MODEL_NAME) -> LoadedWeights:
    """The model as build_model makes it, plus the classifier the weights carry (for labels).
    The fingerprint covers the model without its classifier: a head never changes embeddings."""
    import timm
    import torch

    if weights == RANDOM:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = timm.create_model(model_name, pretrained=False, num_classes=0)
            _content_sensitive_init(model)
            head = _random_head(model.num_features)
        source = f"random:seed={RANDOM_SEED}"
    elif weights:
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
        head = _load_file(model, weights)
        source = f"file:{os.path.abspath(weights)}"
    else:
        model, head = _pretrained(model_name)
        source = f"pretrained:{model.pretrained_cfg.get('hf_hub_id') or model_name}"
    model.eval()
    return LoadedWeights(model, WeightsInfo(source, fingerprint_model(model)), head)


def _random_head(dim: int, classes: int = 1000):
    """A classifier drawn like the other random Linear layers: N(0, 1/fan_in), zero bias."""
    import torch

    generator = torch.Generator().manual_seed(RANDOM_SEED + 1)
    return torch.randn(classes, dim, generator=generator) * dim**-0.5, torch.zeros(classes)


def _content_sensitive_init(model) -> None:
    """Linear weights ~ N(0, 1/fan_in) and LayerScale gammas at 1.

    timm's init starts LayerScale at 1e-5, which mutes every block: random embeddings would
    then depend on mean colour only. This init lets image content reach the embedding.
    """
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, 0.0, module.in_features**-0.5)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif hasattr(module, "gamma") and isinstance(module.gamma, torch.nn.Parameter):
            torch.nn.init.ones_(module.gamma)


def _load_file(model, path: str):
    """Load the body into `model`; returns the file's classifier (weight, bias), if it has one."""
    import torch

    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"weights file not found: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise WeightsUnavailableError(f"cannot read weights file {path}: {e}") from e
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    state = {k.removeprefix("module."): v for k, v in state.items()}
    head = (state.pop("head.weight", None), state.pop("head.bias", None))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsUnavailableError(
            f"{path} does not hold weights of {MODEL_NAME}: {str(e).splitlines()[0]}"
        ) from e
    weight, bias = head
    if weight is None or bias is None or tuple(weight.shape) != (1000, model.num_features):
        return None  # no ImageNet-1k head (a body-only file): no labels
    return weight.float(), bias.float()


def _pretrained(model_name: str):
    import timm

    hub_id = f"timm/{model_name}"
    if not (_cached(hub_id) or _hub_reachable()):
        raise WeightsUnavailableError(offline_message(hub_id))
    try:
        model = timm.create_model(model_name, pretrained=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise WeightsUnavailableError(f"{offline_message(hub_id)}\n(download failed: {e})") from e
    head = (model.head.weight.detach().clone(), model.head.bias.detach().clone())
    model.reset_classifier(0)  # the embedding is the pre-logits; the head only labels
    return model, head


def offline_message(hub_id: str) -> str:
    return (
        f"cannot get the pretrained weights of {hub_id}: the Hugging Face hub is unreachable "
        "and they are not in the local cache.\n"
        f"  - on a machine with internet, download https://huggingface.co/{hub_id}/resolve/main/"
        "model.safetensors and pass it with --weights FILE (or run once online to fill the cache);\n"
        "  - or pass --weights random for tests and offline demos (search results then mean nothing)."
    )


def _cached(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return any(isinstance(try_to_load_from_cache(hub_id, f), str) for f in _HUB_FILES)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe, so offline machines fail in seconds instead of minutes of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def fingerprint_model(model) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def weights_from_manifest(manifest: dict) -> str | None:
    """The --weights value that reproduces a store's recorded weights (None: pretrained)."""
    source = manifest.get("weights_source", "")
    if source.startswith("random"):
        return RANDOM
    if source.startswith("file:"):
        return source.removeprefix("file:")
    return None
