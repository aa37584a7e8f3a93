"""Index choice, IVF list counts, recall measurement and search parameters, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from vitsearch.indexer.store.ann import (
    DEFAULT_MEMORY_BUDGET,
    FLAT_MAX,
    IVF_MIN_VECTORS,
    IndexChoice,
    _nlist_for,
    build_ann,
    choose_index_type,
    exact_neighbours,
    measure_recall,
    search_parameters,
)


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("n, budget, expected", [
    (10, DEFAULT_MEMORY_BUDGET, "flat"),
    (FLAT_MAX, DEFAULT_MEMORY_BUDGET, "flat"),
    (FLAT_MAX + 1, DEFAULT_MEMORY_BUDGET, "ivf-flat"),
    (100_000, 512 * 100_000 * 2, "ivf-sq8"),       # float32 does not fit, one byte a dim does
    (100_000, 512 * 100_000 // 2, "ivf-pq"),        # not even that
    (1000, 1000, "ivf-pq"),                          # a tiny budget rules out flat at any size
])
def test_the_most_exact_index_that_fits_is_chosen(n, budget, expected):
    assert choose_index_type(n, 512, budget) == expected


def test_past_the_budget_the_lists_go_to_disk_as_sq8_unless_a_type_was_chosen():
    from vitsearch.indexer.store.ann import choose_layout

    gib = 1 << 30
    assert choose_layout(50_000, 512, gib) == ("ivf-flat", False)
    assert choose_layout(10_000_000, 512, gib) == ("ivf-pq", False), "PQ still fits in memory"
    assert choose_layout(50_000_000, 512, gib) == ("ivf-sq8", True), "nothing fits: the more exact code, on disk"
    assert choose_layout(50_000_000, 512, 64 * gib) == ("ivf-sq8", False)
    assert choose_layout(5_000, 48, 10_000, preferred="ivf-flat") == ("ivf-flat", True)
    assert choose_layout(5_000, 48, 10_000, preferred="flat") == ("flat", False), "flat is never on disk"


def test_list_count_grows_as_twice_the_square_root_within_bounds():
    assert _nlist_for(IVF_MIN_VECTORS - 1) == 0, "too few vectors to train: flat"
    for n in (IVF_MIN_VECTORS, 10_000, 1_000_000, 50_000_000):
        nlist = _nlist_for(n)
        assert nlist & (nlist - 1) == 0 or nlist == n // 40, "a power of two, unless short of training points"
        assert 16 <= nlist <= max(16, n // 40), "at least ~40 training points a list"
        if n >= 100_000:
            assert nlist / 2 <= 2 * np.sqrt(n) <= nlist * 2


def test_recall_is_the_share_of_true_neighbours_found():
    ids = np.arange(100, 600, dtype=np.int64)
    vectors = unit_vectors(len(ids))
    queries = vectors[:20]
    truth = exact_neighbours(ids, vectors, queries, 11)
    assert (truth[:, 0] == ids[:20]).all(), "each stored query finds itself first"
    assert measure_recall(truth, truth, 10) == 1.0
    # Drop the last 3 true neighbours of every query: recall counts exactly 7 of 10.
    damaged = truth.copy()
    damaged[:, 8:] = -1
    assert measure_recall(damaged, truth, 10) == pytest.approx(0.7)
    # The brute-force count, written out.
    found = np.random.default_rng(1).choice(ids, size=truth.shape)
    expected = np.mean([len(set(t[1:11]) & set([f for f in row if f != t[0]][:10])) / 10
                        for row, t in zip(found, truth, strict=True)])
    assert measure_recall(found, truth, 10) == pytest.approx(expected)


def test_an_ivf_build_reaches_its_recall_target_on_fresh_queries():
    ids = np.arange(5000, dtype=np.int64) * 3
    vectors = unit_vectors(len(ids), seed=2)
    index, choice = build_ann(ids, vectors, "ivf-flat")
    assert choice.index_type == "ivf-flat" and choice.nlist == _nlist_for(len(ids))
    assert choice.recall >= 0.95 and choice.params["nprobe"] >= 1
    queries = unit_vectors(200, seed=3)
    truth = exact_neighbours(ids, vectors, queries, 10)
    _, found = index.search(queries, 10)
    hits = sum(len(set(t) & set(f)) for t, f in zip(truth, found, strict=True)) / truth.size
    assert hits >= 0.85, f"tuned depth generalises poorly: {hits:.3f}"


def test_search_parameters_push_filters_and_cap_depth():
    ids = np.arange(4000, dtype=np.int64)
    vectors = unit_vectors(len(ids), seed=4)
    flat, flat_choice = build_ann(ids, vectors, "flat")
    assert search_parameters(flat, flat_choice) is None
    allowed = ids[ids % 7 == 0]
    params = search_parameters(flat, flat_choice, allowed=allowed)
    _, found = flat.search(vectors[:5], 10, params=params)
    assert np.isin(found, allowed).all(), "only allowed ids come back"

    ivf, choice = build_ann(ids, vectors, "ivf-flat")
    choice = IndexChoice("ivf-flat", choice.nlist, {"nprobe": 32})
    assert search_parameters(ivf, choice, max_nprobe=4).nprobe == 4
    assert search_parameters(ivf, choice).__class__ is type(None)
    filtered = search_parameters(ivf, choice, allowed=allowed)
    assert filtered.nprobe == choice.nlist, "a small allowed set is scanned whole: exact"
    _, found = ivf.search(vectors[:5], 10, params=filtered)
    truth = exact_neighbours(allowed, vectors[allowed], vectors[:5], 10)
    assert np.array_equal(np.sort(found, axis=1), np.sort(truth, axis=1))


def test_a_streamed_build_holds_every_vector_and_finds_the_exact_neighbours(monkeypatch):
    from vitsearch.indexer.store import ann

    monkeypatch.setattr(ann, "STREAM_CHUNK", 700)  # many chunks, the last one short
    ids = np.random.default_rng(5).permutation(6000).astype(np.int64) * 2  # not in order
    vectors = unit_vectors(len(ids), seed=6)
    chunks_read = []

    def chunks():
        for start in range(0, len(ids), 700):
            chunks_read.append(start)
            yield ids[start:start + 700], vectors[start:start + 700]

    index, choice = ann.build_ann_streamed(ids, chunks, 32, "ivf-flat")
    assert len(chunks_read) == 18, "two passes: the samples, then adding and the tuning truth"
    assert index.ntotal == len(ids) and set(ann.index_ids(index)) == set(ids)
    assert choice.recall >= 0.95
    # The chunked top-k equals one exact search over everything.
    top = ann._TopK(50, 11)
    queries = vectors[:50]
    for chunk_ids, chunk in chunks():
        top.add(chunk_ids, chunk, queries)
    assert np.array_equal(top.ids, exact_neighbours(ids, vectors, queries, 11))
    assert (top.ids[:, 0] == ids[:50]).all()
