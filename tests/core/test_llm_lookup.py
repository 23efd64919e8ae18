"""Prompt-lookup decoding's guesses (core.llm.lookup.lookup_draft); its decoding on the real
model is in test_llm_local.py (marked llm)."""

from __future__ import annotations

from core.llm.lookup import lookup_draft


def test_the_draft_continues_the_latest_earlier_occurrence_of_the_longest_suffix() -> None:
    #          0  1  2  3  4  5  6  7  8  9
    ids = [1, 2, 3, 9, 2, 3, 4, 5, 1, 2, 3]
    # suffix (1, 2, 3) occurs at 0 only: what followed it there
    assert lookup_draft(ids, max_ngram=3, max_draft=2) == [9, 2]
    # with bigrams only, (2, 3) last occurred at 4: what followed it there
    assert lookup_draft(ids, max_ngram=2, max_draft=3) == [4, 5, 1]


def test_the_draft_is_cut_at_the_end_of_the_context_and_empty_without_a_match() -> None:
    assert lookup_draft([5, 6, 7, 5, 6], max_ngram=2, max_draft=10) == [7, 5, 6]
    assert lookup_draft([1, 2, 3, 4], max_ngram=3, max_draft=4) == []
    assert lookup_draft([7], max_ngram=3, max_draft=4) == []
    assert lookup_draft([], max_ngram=3, max_draft=4) == []
