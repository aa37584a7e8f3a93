"""The embedding model: timm's ViT and its own eval transform, giving L2-normalised GAP vectors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..imaging.images import BACKGROUND
from . import model_cache
from . import precision as policy
from .choices import DECODE_MODES
from .compiled import CompiledForward, check_compile_mode, failure_note, graph_path, should_compile
from .device_preprocess import DevicePreprocess
from .labels import LabelHead
from .precision import PrecisionCheck, Tried, check_key, fallbacks_of, precision_ladder
from .weights import MODEL_NAME, WeightsInfo, load_weights

__all__ = ["Encoder", "TimmEncoder", "load_encoder", "resolve_device", "encoder_identity", "METRIC",
           "draft_size_for", "check_model_options"]

METRIC = "cosine"  # inner product of L2-normalised vectors


class Encoder:
    """What the pipeline and the search need of a model. Subclasses set the first three
    attributes and implement preprocess, encode and preprocess_config; the rest has defaults
    that suit a CPU model with no precisions to choose and no compiled graph (tests subclass it
    with a small fake)."""

    model_name: str
    dim: int
    weights: WeightsInfo
    draft_size: int | None = None  # JPEG reduced-decode target (None: full decode)
    device: str = "cpu"
    device_inputs: DevicePreprocess | None = None  # set: JPEGs are decoded on the model's device
    label_head: LabelHead | None = None  # set: every indexed image gets its top-5 ImageNet classes
    precision: str | None = None  # what the model runs at; None: a model with no precisions (nothing recorded)
    precision_check: PrecisionCheck | None = None  # the parity check made or reused (see indexer.model.precision)

    @property
    def default_batch_size(self) -> int:
        return 32

    def preprocess(self, image):  # RGB PIL image -> CHW float tensor or array
        raise NotImplementedError

    def encode(self, batch) -> np.ndarray:  # stacked preprocess outputs -> (n, dim) float32
        raise NotImplementedError

    def preprocess_config(self) -> dict:
        raise NotImplementedError

    def encode_with_patches(self, batch) -> tuple[np.ndarray, np.ndarray]:
        """The embeddings (n, dim) and, from the same pass, (n, rows, cols, dim) unit vectors,
        one per image patch, in the embedding's space (for `explain`)."""
        raise NotImplementedError(f"{type(self).__name__} has no patch tokens")

    def first_batch_size(self, batch_size: int) -> int:
        """How many images the run's first batch takes (the rest take batch_size)."""
        return batch_size

    def launch(self, batch) -> Callable[[], np.ndarray]:
        """Start encoding `batch`; the returned function waits for its vectors. By default the
        work is done at once; a GPU encoder returns before its device has finished."""
        vectors = self.encode(batch)
        return lambda: vectors

    def recipe(self) -> EncoderRecipe:
        """What another process needs to rebuild this encoder (cluster workers never download)."""
        return EncoderRecipe(self)

    @property
    def precision_used(self) -> str | None:
        """What the batches so far ran at."""
        return self.precision

    def precision_key(self) -> str | None:
        """What a parity check's outcome depends on (see precision.check_key); None: nothing is checked."""
        return None

    def adopt_precision(self, check: PrecisionCheck) -> None:
        """Run at the precision an earlier check of this store chose (see precision.reuse_precision_check)."""
        self.precision, self.precision_check = check.precision, check

    def prepare_graph(self, images: int, batch_size: int) -> None:
        """Told how many images a run embeds, before its batches (see indexer.model.compiled)."""

    @property
    def graph(self) -> str:
        """How this run's batches ran: 'compiled' when through a compiled graph, else 'eager'."""
        return "eager"


class EncoderRecipe:
    """Rebuilds an encoder in a worker process. The default ships the (small) encoder itself."""

    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    def build(self, device: str) -> Encoder:
        return self.encoder


@dataclass
class TimmEncoder(Encoder):
    model: object
    transform: object
    data_config: dict
    weights: WeightsInfo
    exact: bool
    precision: str = "fp32"  # "fp32", "bf16", "int8" (CPU, Linear layers quantised dynamically) or "fp16"
    device: str = "cpu"
    model_name: str = MODEL_NAME
    dim: int = 512
    device_inputs: DevicePreprocess | None = None  # decode and preprocess on the device
    label_head: LabelHead | None = None
    # The precisions to fall back to, in order, when the current one fails its parity check;
    # None: the precision is not checked (fp32 itself, or a GPU).
    fallbacks: tuple[str, ...] | None = None
    ladder: tuple[str, ...] = ()  # every precision this encoder was set to try, in order
    precision_check: PrecisionCheck | None = None  # what the first batch measured (see check_precision)
    compile_mode: str = "auto"  # see indexer.model.compiled: "auto" builds a graph in long CPU runs, then reuses it
    compiled: CompiledForward | None = None  # set by prepare_graph when this run compiles
    # A graph built after this run's precision check (or under a check reused from the store) has
    # not been checked against fp32 yet: its first batch is (see _check_new_graph).
    graph_unchecked: bool = False
    _int8_model: object = field(default=None, repr=False)  # built on first use of int8

    @property
    def draft_size(self) -> int | None:
        return draft_size_for(self.data_config, self.exact)

    def preprocess(self, image):
        return self.transform(image)

    @property
    def default_batch_size(self) -> int:
        return 128 if self.device.startswith("cuda") else 32

    def encode(self, batch) -> np.ndarray:
        return self.launch(batch)()

    def launch(self, batch) -> Callable[[], np.ndarray]:
        """Queue the batch on the device; the returned function waits for its vectors.
        On CUDA the copy back is queued too, so the caller can commit the previous batch
        while this one computes. The first batch also checks the precision (check_precision)."""
        if self.precision_check is None and self.fallbacks is not None:
            vectors = self.check_precision(batch)
            return lambda: vectors
        if self.graph_unchecked and self.compiled.serves(batch, self.precision):
            vectors = self._check_new_graph(batch)
            return lambda: vectors
        if batch.device.type == "cpu" and self.device.startswith("cuda"):
            batch = batch.pin_memory()
        vectors = self._pooled(batch.to(self.device, non_blocking=True), self.precision)
        if not self.device.startswith("cuda"):
            return lambda: vectors.numpy()
        import torch

        done = torch.cuda.Event()
        done.record()

        def wait() -> np.ndarray:
            done.synchronize()
            return vectors.numpy()

        return wait

    def _pooled(self, batch, precision: str):
        """Unit pre-logits of a batch on the model's device, at `precision` (copied to the CPU)."""
        import torch

        model = self._model_for(precision)
        with torch.inference_mode(), self._autocast(precision):
            if self.compiled is not None and self.compiled.serves(batch, precision):
                pooled = self.compiled(batch)
            else:
                pooled = _pre_logits(model, batch)
            return torch.nn.functional.normalize(pooled.float(), dim=1).to("cpu", non_blocking=True)

    def _check_new_graph(self, batch) -> np.ndarray:
        """The first batch through a graph built in this run, its first PARITY_IMAGES also run
        eagerly in fp32: a graph whose vectors miss PARITY_COSINE is dropped (and not built again
        by "auto"), and the batch runs eagerly at the precision the run checked."""
        self.graph_unchecked = False
        batch = batch.to(self.device)
        vectors = self._pooled(batch, self.precision).numpy()
        if self.compiled.failed is None:
            reference = self._pooled(batch[:policy.PARITY_IMAGES], "fp32").numpy()
            cosine = _min_cosine(vectors, reference)
            if cosine < policy.PARITY_COSINE:
                self.compiled.refuse(f"its vectors reach cosine {cosine:.4f} to fp32, under {policy.PARITY_COSINE}")
                vectors = self._pooled(batch, self.precision).numpy()
        return vectors

    def prepare_graph(self, images: int, batch_size: int) -> None:
        """Run this run's full batches through the compiled graph: a cached one whenever the run
        has a full batch, a new one (built on first use) when the run is long enough to pay for
        building it (see indexer.model.compiled)."""
        if self.compiled is not None or self.device != "cpu" or self.compile_mode == "no":
            return
        path = graph_path(model_name=self.model_name, fingerprint=self.weights.fingerprint,
                          precision=self.precision, batch_size=batch_size)
        cached = path.exists()
        if should_compile(self.compile_mode, device=self.device, precision=self.precision, images=images,
                          batch_size=batch_size, cached=cached, failed_before=failure_note(path).exists()):
            self.compiled = CompiledForward(self.model, _pre_logits, batch_size, self.precision, path,
                                            input_size=tuple(self.data_config["input_size"][1:]),
                                            build=not cached)
            # before the check, the first batch is checked through the graph (check_precision)
            self.graph_unchecked = not cached and self.precision_check is not None

    def first_batch_size(self, batch_size: int) -> int:
        """A run starts with PARITY_IMAGES alone (all a precision check needs): the model starts
        after a few decodes instead of a whole batch's, so the first files commit and the progress
        bar moves early (an --exact run of full-size photos waited 15-23 s for its first 32). A
        compiled run keeps a full first batch, so that it runs (and is checked) through the graph."""
        if self.compiled is None:
            return min(batch_size, policy.PARITY_IMAGES)
        return batch_size

    @property
    def graph(self) -> str:
        """How this run's batches ran: 'compiled' when through the compiled graph, else 'eager'."""
        used = self.compiled is not None and self.compiled.used and self.compiled.failed is None
        return "compiled" if used else "eager"

    def check_precision(self, batch) -> np.ndarray:
        """Embed the batch's first PARITY_IMAGES at the current precision and in fp32: keep the
        precision if every one reaches PARITY_COSINE (see indexer.model.precision), else fall back
        along the ladder. Returns the batch's vectors at the precision kept; the outcome is in
        `precision_check` (recorded in the store). A batch smaller than the check (a run or a
        query of a few images) runs fp32 alone: exact, in one pass where checking takes two; a
        later batch checks."""
        batch = batch.to(self.device)
        if len(batch) < policy.PARITY_IMAGES:
            return self._pooled(batch, "fp32").numpy()
        reference = self._pooled(batch[:policy.PARITY_IMAGES], "fp32").numpy()
        tried: list[Tried] = []
        while True:
            if self.precision == "fp32":
                vectors, cosine = None, 1.0
            else:  # the whole batch, so that a compiled graph's output is what is checked
                vectors = self._pooled(batch, self.precision).numpy()
                cosine = _min_cosine(vectors, reference)
            tried.append(Tried(self.precision, round(cosine, 6)))
            if cosine >= policy.PARITY_COSINE or not self.fallbacks:
                break
            self.precision, self.fallbacks = self.fallbacks[0], self.fallbacks[1:]
        self.precision_check = PrecisionCheck(self.precision, round(cosine, 6), len(reference), tuple(tried),
                                              key=self.precision_key())
        if vectors is None:
            rest = [self._pooled(batch[len(reference):], "fp32").numpy()] if len(batch) > len(reference) else []
            vectors = np.concatenate([reference, *rest])
        return vectors

    @property
    def precision_used(self) -> str:
        """What the batches so far ran at: fp32 while the check waits for a batch big enough."""
        return "fp32" if self.precision_check is None and self.fallbacks is not None else self.precision

    def precision_key(self) -> str | None:
        return check_key(self.ladder, self.weights.fingerprint)

    def adopt_precision(self, check: PrecisionCheck) -> None:
        super().adopt_precision(check)
        self.fallbacks = None

    def _model_for(self, precision: str):
        if precision != "int8":
            return self.model
        if self._int8_model is None:
            self._int8_model = _quantized(self.model)
        return self._int8_model

    def encode_with_patches(self, batch) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings as encode() gives them, and the final patch tokens (registers dropped)
        through the LayerNorm the pooled embedding goes through, as unit vectors on the grid."""
        import torch

        normalize = torch.nn.functional.normalize
        model = self._model_for(self.precision)
        with torch.inference_mode(), self._autocast(self.precision):
            features = model.forward_features(batch.to(self.device))
            pooled = model.forward_head(features, pre_logits=True)
            tokens = model.fc_norm(features[:, model.num_prefix_tokens:])
        rows, cols = self.model.patch_embed.grid_size
        tokens = normalize(tokens.float(), dim=-1).reshape(len(tokens), rows, cols, -1)
        return normalize(pooled.float(), dim=1).cpu().numpy(), tokens.cpu().numpy()

    def _autocast(self, precision: str):
        import torch

        if precision in ("fp32", "int8"):
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype)

    def recipe(self) -> EncoderRecipe:
        return TimmRecipe(self)

    def preprocess_config(self) -> dict:
        """What must match for two embeddings to be comparable (the mode is not part of it)."""
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()}
        config.update(exif_transpose=True, alpha_background=list(BACKGROUND), high_bit="scaled")
        return config


class TimmRecipe(EncoderRecipe):
    """The weights as tensors plus the settings: a worker builds the same architecture and loads
    them, whatever the weights' source (a file, random, or the hub on the driver)."""

    def __init__(self, encoder: TimmEncoder):
        self.state = {k: v.detach().to("cpu") for k, v in encoder.model.state_dict().items()}
        self.data_config, self.weights = encoder.data_config, encoder.weights
        self.exact, self.model_name = encoder.exact, encoder.model_name

    def build(self, device: str) -> TimmEncoder:
        model, transform = self._model_and_transform()
        model.eval().to(device)
        ladder = precision_ladder(device, self.exact)  # this worker's hardware decides, as locally
        return TimmEncoder(model=model, transform=transform, data_config=dict(self.data_config), weights=self.weights,
                           precision=ladder[0], exact=self.exact, device=device, model_name=self.model_name,
                           dim=model.num_features, fallbacks=fallbacks_of(ladder), ladder=ladder)

    def _model_and_transform(self):
        """Our plain-torch ViT and timm's transform rebuilt without timm where the architecture is
        known (a worker then starts without importing timm: seconds per actor); else timm's."""
        from .vit import VIT_CONFIGS, ViT

        if self.model_name.partition(".")[0] in VIT_CONFIGS:
            from .transform import EvalTransform

            model = ViT.for_model(self.model_name)
            model.load_state_dict({k: v.clone() for k, v in self.state.items()}, strict=True, assign=True)
            return model, EvalTransform(self.data_config)
        import timm
        import timm.data

        model = timm.create_model(self.model_name, pretrained=False, num_classes=0)
        model.load_state_dict(self.state)
        return model, timm.data.create_transform(**self.data_config, is_training=False)


def _pre_logits(model, batch):
    """The pooled pre-logits (before normalising): the embedding's forward pass, eager or compiled."""
    return model.forward_head(model.forward_features(batch), pre_logits=True)


def _min_cosine(vectors: np.ndarray, reference: np.ndarray) -> float:
    """The lowest cosine between the first rows of `vectors` and the fp32 `reference` (unit rows)."""
    return float(np.min(np.sum(vectors[:len(reference)] * reference, axis=1)))


def encoder_identity(encoder: Encoder) -> dict:
    """The manifest entries that make two embeddings comparable, plus where the weights came from."""
    return {
        "model_name": encoder.model_name,
        "model_tag": encoder.model_name.partition(".")[2],
        "preprocess": encoder.preprocess_config(),
        "dim": int(encoder.dim),
        "metric": METRIC,
        "weights_source": encoder.weights.source,
        "weights_fingerprint": encoder.weights.fingerprint,
    }


def resize_target(data_config: dict) -> int:
    """The short side timm resizes to before its centre crop."""
    return int(data_config["input_size"][-1] / data_config["crop_pct"])


def draft_size_for(data_config: dict, exact: bool) -> int | None:
    """The JPEG reduced-decode target: no less than twice the resize target (parity holds, decode
    is far cheaper); None (full decode) in exact mode."""
    return None if exact else 2 * resize_target(data_config)


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from ..errors import ConfigError

        raise ConfigError(f"device={device!r} was asked for, but no CUDA GPU is available", parameter="device")
    return device


def check_model_options(*, exact: bool, precision: str | None, compile_mode: str) -> None:
    """Refuse a bad precision, exact or compile_mode before anything loads (without torch)."""
    precision_ladder("cpu", exact, precision or "auto")
    check_compile_mode(compile_mode)


def _quantized(model):
    """The model with its Linear layers quantised to int8 (weights ahead, activations per batch)."""
    import copy
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch points eager quantisation users to torchao
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).cpu(), {torch.nn.Linear},
                                                      dtype=torch.qint8)


def load_encoder(
    weights: str | None = None,
    *,
    device: str = "auto",
    exact: bool = False,
    precision: str | None = None,
    decode: str = "auto",
    compile_mode: str = "auto",
) -> TimmEncoder:
    """Build the encoder. `weights`: file path, "random", or None for the pretrained download.
    `precision`: "auto" (None) or one of bf16, int8, fp32 (see precision_ladder).

    `decode`: "device" decodes JPEGs and runs the transform on the model's device, "cpu" uses
    Pillow and timm's transform in the reader threads, "auto" is "device" on CUDA unless exact.
    `compile_mode`: auto, yes or no (see indexer.model.compiled); a run decides in prepare_graph.
    """
    import torch

    device = resolve_device(device)
    ladder = precision_ladder(device, exact, precision or "auto")
    check_compile_mode(compile_mode)  # a bad mode is said before the model loads
    fast = device == "cpu" and decode != "device"  # the cached model has no device-side transform
    prepared = model_cache.load_prepared(weights, MODEL_NAME) if fast else None
    if prepared is None:
        model, info, data_config, transform, head, names = _build_with_timm(weights, save=fast)
    else:
        from .transform import EvalTransform  # timm's eval transform without importing timm

        model, info, data_config, head, names = (prepared.model, prepared.info, prepared.data_config,
                                                 prepared.head, prepared.names)
        transform = EvalTransform(data_config)
    label_head = LabelHead.from_model(model, *head, names, random=info.is_random) if head and names else None
    model.to(device)
    if device == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    encoder = TimmEncoder(
        model=model,
        transform=transform,
        data_config=dict(data_config),
        weights=info,
        device=device,
        precision=ladder[0],
        fallbacks=fallbacks_of(ladder),
        ladder=ladder,
        exact=exact,
        dim=model.num_features,
        label_head=label_head,
        compile_mode=compile_mode,
    )
    encoder.device_inputs = _device_inputs(decode, encoder)
    return encoder


def _build_with_timm(weights: str | None, *, save: bool):
    """timm's model, transform and class names (the first run with these weights); with `save`,
    cached so that later CPU runs start without importing timm (see model_cache)."""
    import timm.data

    loaded = load_weights(weights)
    data_config = dict(timm.data.resolve_model_data_config(loaded.model))
    transform = timm.data.create_transform(**data_config, is_training=False)
    names = None
    if loaded.head is not None:  # the class descriptions shipped with timm
        classes = timm.data.ImageNetInfo()
        names = [classes.index_to_description(i) for i in range(classes.num_classes())]
    if save:
        model_cache.save_prepared(weights, MODEL_NAME, loaded.model, loaded.info, data_config, loaded.head, names)
    return loaded.model, loaded.info, data_config, transform, loaded.head, names


def _device_inputs(decode: str, encoder: TimmEncoder) -> DevicePreprocess | None:
    from ..errors import ConfigError

    device, exact, transform = encoder.device, encoder.exact, encoder.transform
    if decode not in DECODE_MODES:
        raise ConfigError(f"decode={decode!r} is not one of {', '.join(DECODE_MODES)}", parameter="decode")
    wanted = decode == "device" or (decode == "auto" and device.startswith("cuda") and not exact)
    if not wanted:
        return None
    if exact:
        raise ConfigError("exact=True decodes with Pillow on the CPU: drop decode='device' or exact", parameter="exact")
    if not DevicePreprocess.supports(transform):
        if decode == "device":
            raise ConfigError("this model's transform has no tensor equivalent: use decode='cpu'")
        return None
    return DevicePreprocess(transform, device, encoder.draft_size)
