"""Word error rate: hand-made cases with known values, corpus vs per-utterance averaging."""

import math
import random

import pytest

from talkface.metrics.wer import (
    align_words,
    utterance_word_error_rates,
    word_accuracy,
    word_edit_distance,
    word_error_counts,
    word_error_rate,
    word_errors,
)


def _reference_levenshtein(a, b):
    """Textbook recursive definition, memoised; independent of the implementation under test."""
    from functools import lru_cache

    @lru_cache(maxsize=None)
    def distance(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(distance(i - 1, j) + 1, distance(i, j - 1) + 1, distance(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return distance(len(a), len(b))


def test_identical_texts_have_no_errors():
    assert word_error_rate("the cat sat", "the cat sat") == 0.0
    assert word_accuracy(["a b", "c"], ["a b", "c"]) == 1.0


def test_substitution_deletion_insertion_counts():
    # ref: the cat sat on the mat / hyp: the cat sit on mat -> "sat"->"sit" (S), "the" deleted (D)
    counts = align_words("the cat sat on the mat", "the cat sit on mat")
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.reference_words) == (1, 1, 0, 6)
    assert word_error_rate("the cat sit on mat", "the cat sat on the mat") == pytest.approx(2 / 6)
    insert = word_error_counts("a b", "a x b")
    assert insert == {"errors": 1, "words": 2, "substitutions": 0, "deletions": 0, "insertions": 1}
    assert word_errors("a x b", "a b") == (1, 2)  # hypothesis first


def test_corpus_level_differs_from_mean_of_utterances():
    references = ["a b c d", "e"]
    hypotheses = ["a b c d", "f"]
    # av_hubert: total errors / total reference words = 1 / 5; TalkLip's mean of per-utterance WERs = (0 + 1) / 2
    assert word_error_rate(hypotheses, references) == pytest.approx(0.2)
    assert word_error_rate(hypotheses, references, average="utterance") == pytest.approx(0.5)
    assert utterance_word_error_rates(hypotheses, references) == [0.0, 1.0]
    assert word_accuracy(hypotheses, references) == pytest.approx(0.8)


def test_empty_hypothesis_and_insertions_beyond_one():
    assert word_error_rate([""], ["one two three"]) == 1.0
    assert word_error_rate(["b c d"], ["a"]) == 3.0  # 1 substitution + 2 insertions over 1 word
    assert word_accuracy(["b c d"], ["a"]) == -2.0


def test_whitespace_is_normalised_but_case_is_not():
    assert word_error_rate("  hello   world ", "hello world") == 0.0
    assert word_error_rate("Hello world", "hello world") == 0.5  # normalise case before scoring


def test_empty_references_and_bad_input():
    assert math.isnan(utterance_word_error_rates(["x"], [""])[0])
    assert word_error_rate(["x", "a"], ["", "a"]) == pytest.approx(1.0)  # 1 insertion over 1 reference word
    with pytest.raises(ValueError, match="no words"):
        word_error_rate(["x"], [""])
    with pytest.raises(ValueError, match="one per utterance"):
        word_error_rate(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="average"):
        word_error_rate("a", "a", average="median")


def test_edit_distance_matches_textbook_levenshtein():
    rng = random.Random(0)
    vocabulary = ["a", "b", "c", "d"]
    for _ in range(200):
        ref = [rng.choice(vocabulary) for _ in range(rng.randint(0, 7))]
        hyp = [rng.choice(vocabulary) for _ in range(rng.randint(0, 7))]
        counts = align_words(ref, hyp)
        assert counts.errors == _reference_levenshtein(tuple(ref), tuple(hyp))
        assert word_edit_distance(" ".join(ref), " ".join(hyp)) == counts.errors
        # the counts describe a valid alignment: hypothesis length = ref - deletions + insertions
        assert len(hyp) == len(ref) - counts.deletions + counts.insertions
