"""The photographer's records as the page shows them."""

from __future__ import annotations

from vitsearch.ui.records import standing, stars


def test_a_rating_reads_as_stars_and_a_reject_says_so():
    assert stars(5) == "★★★★★" and stars(3) == "★★★☆☆"
    assert stars(-1) == "rejected" and stars(None) == "" and stars(0) == ""
    assert standing({"rating": 5, "pick": "picked"}) == " (★★★★★, picked)"
    assert standing({"rating": -1, "pick": "rejected"}) == " (rejected)"
    assert standing({"rating": None, "pick": None}) == ""
