"""The precision policy: the choices, the ladder tried on this CPU, the parity check's outcome,
and its reuse from and recording into the store's manifest."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from . import cpu_features

if TYPE_CHECKING:
    from .encoder import Encoder

__all__ = ["PRECISION_CHOICES", "PARITY_COSINE", "PARITY_IMAGES", "Tried", "PrecisionCheck", "precision_ladder",
           "fallbacks_of", "check_key", "reuse_precision_check", "record_precision"]

PRECISION_CHOICES = ("auto", "bf16", "int8", "fp32")  # what a run may ask for on a CPU; CUDA runs fp16
# A faster precision is kept only if every image checked reaches this cosine to fp32: the first
# PARITY_IMAGES of a run's first batch (an fp32 pass over a whole batch would cost a small daily
# run more than the faster precision saves).
PARITY_COSINE = 0.999
PARITY_IMAGES = 8


@dataclass(frozen=True)
class Tried:
    """One precision the check ran, and its lowest cosine to fp32."""

    precision: str
    min_cosine: float


@dataclass(frozen=True)
class PrecisionCheck:
    """The outcome of a parity check: the precision kept and its lowest cosine to fp32, how many
    images were checked, every precision tried in order, and the key it holds for (see check_key).
    `reused`: adopted from the store's manifest rather than measured by this run."""

    precision: str
    min_cosine: float | None
    images: int
    tried: tuple[Tried, ...] = ()
    key: str | None = None
    reused: bool = False

    @property
    def fell_back(self) -> bool:
        """True when the first precision tried failed its check."""
        return bool(self.tried) and self.tried[0].precision != self.precision

    def manifest_values(self) -> dict:
        """The manifest entries that record this check (names and values other tools read)."""
        return {"precision": self.precision, "precision_min_cosine": self.min_cosine,
                "precision_checked_images": self.images,
                "precision_tried": [{"precision": t.precision, "min_cosine": t.min_cosine} for t in self.tried],
                "precision_check_key": self.key}

    @classmethod
    def from_manifest(cls, manifest: dict) -> PrecisionCheck | None:
        """The check a store recorded, or None when it recorded none. Entries missing from stores
        written before a field existed read as empty."""
        if not manifest.get("precision_check_key") or not manifest.get("precision"):
            return None
        tried = tuple(Tried(str(t["precision"]), t["min_cosine"]) for t in manifest.get("precision_tried") or ())
        return cls(precision=manifest["precision"], min_cosine=manifest.get("precision_min_cosine"),
                   images=int(manifest.get("precision_checked_images") or 0), tried=tried,
                   key=manifest["precision_check_key"])


def precision_ladder(device: str, exact: bool, requested: str = "auto") -> tuple[str, ...]:
    """The precisions to try, fastest first, ending in fp32 on a CPU. `exact` is fp32; a GPU
    runs fp16; on a CPU, "auto" tries bf16 where it is native (AVX512-BF16, AMX), then int8
    where int8 dot products are (VNNI, AMX), then fp32. A requested precision is tried alone
    before fp32."""
    from ..errors import ConfigError

    if requested not in PRECISION_CHOICES:
        raise ConfigError(f"precision={requested!r} is not one of {', '.join(PRECISION_CHOICES)}",
                          parameter="precision")
    if exact:
        if requested not in ("auto", "fp32"):
            raise ConfigError("exact is fp32 already: leave precision at auto", parameter="exact")
        return ("fp32",)
    if device.startswith("cuda"):
        return ("fp16",)
    if requested != "auto":
        return (requested,) if requested == "fp32" else (requested, "fp32")
    ladder = ["bf16"] if cpu_features.has_native_bf16() else []
    if cpu_features.has_int8_dot_products():
        ladder.append("int8")
    return (*ladder, "fp32")


def fallbacks_of(ladder: tuple[str, ...]) -> tuple[str, ...] | None:
    """The precisions to fall back to after the first; None for one that needs no check (fp32
    itself, fp16 on a GPU)."""
    return None if ladder[0] in ("fp32", "fp16") else ladder[1:]


def check_key(ladder: tuple[str, ...], weights_fingerprint: str) -> str | None:
    """What a parity check's outcome depends on besides the images: the ladder tried, the
    weights, torch and this CPU's features (None when nothing is checked)."""
    if len(ladder) < 2:
        return None
    import torch

    flags = ",".join(sorted(cpu_features.cpu_flags() & cpu_features.PRECISION_FLAGS))
    return "|".join([*ladder, weights_fingerprint, torch.__version__, flags])


def reuse_precision_check(manifest: dict, encoder: Encoder) -> None:
    """A store whose images already passed (or failed) the check for this encoder's ladder, on
    this CPU and torch, keeps that outcome: small daily runs (and queries) do not pay an fp32 pass."""
    key = encoder.precision_key()
    if key is None or encoder.precision_check is not None:
        return
    recorded = PrecisionCheck.from_manifest(manifest)
    if recorded is not None and recorded.key == key:
        encoder.adopt_precision(replace(recorded, reused=True))


def record_precision(store, precision: str, *, check: PrecisionCheck | None = None,
                     graph: str | None = None) -> None:
    """Record in the store's manifest the precision a run used, the check it made (None: none,
    or one reused from the manifest) and how its model ran (`graph`: None when it embedded
    nothing). Writes only what changed."""
    values = {"precision": precision}
    recorded = store.manifest()
    if graph is not None and recorded.get("model_graph") != graph:
        values["model_graph"] = graph
    if check is not None and not check.reused:
        values.update(check.manifest_values())
    if recorded.get("precision") != precision or len(values) > 1:
        store.set_manifest(**values)
