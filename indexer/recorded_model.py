"""The store's recorded model, standing in for the real one in a run that embeds nothing.

A daily `vitsearch index ~/Photos` usually finds nothing new: loading torch and the model for it
cost ~2 s of a 2.5 s run. When the scan shows no new or changed file and every stored row
already has its labels and signatures, the run gets this stand-in instead: the identity the
store recorded, so that every other step (removals, the FAISS sync) runs as always.
"""

from __future__ import annotations

from .model.encoder import Encoder, draft_size_for
from .model.weights import WeightsInfo, weights_from_manifest
from .plan import SyncPlan
from .store.store import LIVE, Store

__all__ = ["RecordedModel", "recorded_model_if_idle"]


class RecordedModel(Encoder):
    """The identity of the model a store was built with; it cannot embed."""

    def __init__(self, manifest: dict):
        self.model_name = manifest["model_name"]
        self.dim = int(manifest["dim"])
        self.weights = WeightsInfo(manifest["weights_source"], manifest["weights_fingerprint"])
        self._preprocess = manifest["preprocess"]
        self.draft_size = draft_size_for(self._preprocess, exact=False)

    def preprocess_config(self) -> dict:
        return self._preprocess

    def preprocess(self, image):
        raise RuntimeError("the recorded model stands in for a run that embeds nothing")

    def encode(self, batch):
        raise RuntimeError("the recorded model stands in for a run that embeds nothing")


def recorded_model_if_idle(store: Store, plan: SyncPlan | None, weights: str | None) -> RecordedModel | None:
    """The stand-in when this run needs no model: the store's own weights, no file to read
    in its `plan` (none new, none changed), and no stored row waiting for labels or signatures.
    Else None, and the run loads the model as always."""
    if not store.exists() or plan is None or plan.to_read or plan.videos:
        return None
    try:
        manifest = store.manifest()
        if not manifest.get("weights_fingerprint") or weights not in (None, weights_from_manifest(manifest)):
            return None
        with store.connect() as con:
            waiting = con.execute("SELECT count(*) FILTER (WHERE labels IS NULL "
                                  "OR (pixel_hash IS NULL AND kind = 'image')) "
                                  f"FROM images WHERE {LIVE}").fetchone()[0]
        return None if waiting else RecordedModel(manifest)
    except Exception:  # noqa: BLE001 - a store this cannot read (older columns, damage): the full path says
        return None
