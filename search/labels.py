"""Finding images by the model's own labels: a class named by any of its synonyms, the images
whose top-5 holds it, and the store's label counts (for facets and completion)."""

from __future__ import annotations

import difflib

import numpy as np

from ..indexer.errors import ConfigError
from ..indexer.store.store import LIVE, Store

__all__ = ["class_names", "resolve_label", "label_matches", "label_counts", "synonyms"]

SUGGESTIONS = 5


def class_names(store: Store) -> list[str]:
    """The class descriptions of the head that labelled this store, in class order."""
    with store.connect() as con:
        return [r[0] for r in con.execute("SELECT name FROM label_classes ORDER BY class").fetchall()]


def synonyms(description: str) -> list[str]:
    """'tabby, tabby cat' -> ['tabby', 'tabby cat']."""
    return [s.strip() for s in description.split(",") if s.strip()]


def resolve_label(store: Store, name: str) -> list[str]:
    """The classes `name` means: the whole description or any one synonym, case-insensitive
    ('crane' is both a bird and a machine). A near miss is refused with suggestions."""
    names = class_names(store)
    if not names:
        raise ConfigError(f"store {store.dir} has no labels: its weights carry no ImageNet-1k head, or it was "
                          "indexed before labels existed (run `vitsearch index` on its folders once: labels "
                          "come from the stored embeddings, no image is embedded again)")
    wanted = " ".join(name.lower().split())
    found = [d for d in names if wanted == d.lower() or wanted in (s.lower() for s in synonyms(d))]
    if found:
        return found
    every = sorted({s for d in names for s in synonyms(d)})
    close = difflib.get_close_matches(name, every, n=SUGGESTIONS, cutoff=0.6)
    close += [s for s in every if wanted in s.lower() and s not in close][:SUGGESTIONS - len(close)]
    hint = f"; did you mean: {', '.join(repr(s) for s in close)}?" if close else ""
    raise ConfigError(f"no ImageNet-1k class is called {name!r}{hint}")


def label_matches(store: Store, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, probabilities) of the live images whose top-5 holds one of `classes`, best first;
    an image's probability is the highest it gives any of them."""
    with store.connect() as con:
        rows = con.execute(f"SELECT id, labels, label_probs FROM images WHERE {LIVE} "
                           "AND list_has_any(labels, ?::VARCHAR[])", [classes]).fetchall()
    wanted = set(classes)
    scored = sorted(((max(p for n, p in zip(names, probs, strict=True) if n in wanted), i)
                     for i, names, probs in rows), key=lambda x: (-x[0], x[1]))
    return (np.array([i for _, i in scored], np.int64), np.array([p for p, _ in scored], np.float32))


def label_counts(store: Store, top: int = 1) -> list[tuple[str, int]]:
    """How many live images hold each class among their first `top` labels, most first."""
    with store.connect() as con:
        return [tuple(r) for r in con.execute(
            f"SELECT name, count(*) AS n FROM (SELECT unnest(labels[1:{int(top)}]) AS name FROM images "
            f"WHERE {LIVE} AND labels IS NOT NULL) GROUP BY name ORDER BY n DESC, name").fetchall()]
