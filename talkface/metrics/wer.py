"""Word error rate (WER) as the AV-HuBERT reference computes it, plus per-utterance variants and word accuracy.

av_hubert `infer_s2s.py` scores a test set at the corpus level:

    WER = sum over utterances of word_edit_distance(hyp.split(), ref.split()) / sum of len(ref.split())

(it prints 100 x that). The edit distance is the plain Levenshtein distance over words (unit cost for a
substitution, deletion or insertion). Texts are split on whitespace and compared as they are: normalise them
beforehand the way the reference does (lower-case and round-trip through the model's tokenizer, see
`talkface.pipelines.lip_reading.pipeline.LipReader.normalize_reference`).

TalkLip reports a second number, the *mean of per-utterance* WERs; `word_error_rate(..., average="utterance")`
gives it. The two differ whenever utterances have different lengths.

Functions return fractions (0.25 = 25 %), not percentages.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..hub import registry
from .base import GENERATED, TEXT, Metric, register_metric


@dataclass(frozen=True)
class WordErrorCounts:
    """Alignment of a hypothesis against a reference: errors = substitutions + deletions + insertions."""

    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Errors per reference word (NaN when the reference is empty)."""
        return self.errors / self.reference_words if self.reference_words else math.nan


def _words(text) -> list[str]:
    if isinstance(text, str):
        return text.strip().split()
    return [str(word) for word in text]  # already a word list


def align_words(reference, hypothesis) -> WordErrorCounts:
    """Minimum-edit alignment of two texts (strings, split on whitespace, or word lists).

    The total is the Levenshtein distance; among minimal alignments the split into substitutions, deletions and
    insertions prefers substitutions (as most WER tools report it).
    """
    ref, hyp = _words(reference), _words(hypothesis)
    # cost[i][j] = (edits, substitutions, deletions, insertions) aligning ref[:i] with hyp[:j]
    previous = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i in range(1, len(ref) + 1):
        current = [(i, 0, i, 0)]
        for j in range(1, len(hyp) + 1):
            if ref[i - 1] == hyp[j - 1]:
                best = previous[j - 1]
            else:
                sub, dele, ins = previous[j - 1], previous[j], current[j - 1]
                best = min(
                    (sub[0] + 1, sub[1] + 1, sub[2], sub[3]),
                    (dele[0] + 1, dele[1], dele[2] + 1, dele[3]),
                    (ins[0] + 1, ins[1], ins[2], ins[3] + 1),
                    key=lambda cell: (cell[0], -cell[1]),
                )
            current.append(best)
        previous = current
    _, substitutions, deletions, insertions = previous[-1]
    return WordErrorCounts(substitutions, deletions, insertions, len(ref))


def word_edit_distance(reference, hypothesis) -> int:
    """Levenshtein distance between the word sequences (what `editdistance.eval` gives on split texts)."""
    return align_words(reference, hypothesis).errors


def word_errors(hypothesis: str, reference: str) -> tuple[int, int]:
    """(word errors, reference words) of one utterance. Note the order: hypothesis first."""
    counts = align_words(reference, hypothesis)
    return counts.errors, counts.reference_words


def word_error_counts(reference: str, hypothesis: str) -> dict:
    """Counts of one utterance as a dict: errors, words (reference), substitutions, deletions, insertions.
    Note the order: reference first."""
    counts = align_words(reference, hypothesis)
    return {"errors": counts.errors, "words": counts.reference_words, "substitutions": counts.substitutions,
            "deletions": counts.deletions, "insertions": counts.insertions}


def _pairs(hypotheses, references) -> list[tuple]:
    if isinstance(hypotheses, str) and isinstance(references, str):
        return [(hypotheses, references)]
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses but {len(references)} references; pass one per utterance")
    if not hypotheses:
        raise ValueError("no utterances to score")
    return list(zip(hypotheses, references))


def utterance_word_error_rates(hypotheses, references) -> list[float]:
    """WER of each utterance (NaN for an empty reference)."""
    return [align_words(reference, hypothesis).wer for hypothesis, reference in _pairs(hypotheses, references)]


def word_error_rate(hypotheses, references, average: str = "corpus") -> float:
    """Word error rate of hypotheses against references (lists of texts, or one text each).

    average="corpus" (default, the AV-HuBERT reference): total word errors / total reference words.
    average="utterance" (TalkLip's second figure): mean of the per-utterance WERs, skipping empty references.
    """
    pairs = _pairs(hypotheses, references)
    counts = [align_words(reference, hypothesis) for hypothesis, reference in pairs]
    if average == "corpus":
        total_words = sum(c.reference_words for c in counts)
        if total_words == 0:
            raise ValueError("the references contain no words; WER is undefined")
        return sum(c.errors for c in counts) / total_words
    if average == "utterance":
        rates = [c.wer for c in counts if c.reference_words]
        if not rates:
            raise ValueError("the references contain no words; WER is undefined")
        return sum(rates) / len(rates)
    raise ValueError(f"average must be 'corpus' or 'utterance', got {average!r}")


def word_accuracy(hypotheses, references) -> float:
    """1 - corpus WER = (N - S - D - I) / N; negative when insertions outnumber correct words."""
    return 1.0 - word_error_rate(hypotheses, references, average="corpus")


def load_lip_reader(source, device="cpu", face_backend="mediapipe"):
    """A callable `frames -> transcript` over a fine-tuned AV-HuBERT folder (for `talkface evaluate --metrics wer`).

    `frames` are what `talkface.pipelines.lip_reading.pipeline.LipReader.transcribe` accepts: a video path or
    (T, H, W, 3) uint8 RGB frames at 25 fps.
    """
    from ..pipelines.lip_reading.pipeline import LipReader

    reader = LipReader.from_pretrained(source, device=device, face_backend=face_backend)

    def transcribe(frames) -> str:
        return reader.transcribe(frames).text

    transcribe.reader = reader
    return transcribe


__all__ = [
    "WordErrorCounts",
    "align_words",
    "word_edit_distance",
    "word_errors",
    "word_error_counts",
    "utterance_word_error_rates",
    "word_error_rate",
    "word_accuracy",
    "load_lip_reader",
    "WERMetric",
]


# ----------------------------------------------------------------------------------------------------------------
# The metric of `talkface evaluate`: the lip reader's transcript of the generated video, corpus-level WER
# ----------------------------------------------------------------------------------------------------------------

LIP_READER_HINT = (
    "run `talkface download avhubert-base-lipreading --accept-license` (the default --lip-reader), or convert a "
    "fine-tuned AV-HuBERT lip reader with `talkface convert avhubert --checkpoint base_vox_433h.pt --out DIR` and "
    "pass --lip-reader DIR (or set TALKFACE_LIP_READER)"
)


@register_metric
class WERMetric(Metric):
    """Word error rate of the AV-HuBERT lip reader on the generated video against the transcript NAME.txt.

    The data-set value is corpus-level, as the AV-HuBERT reference computes it: all word errors over all reference
    words. Options read: lip_reader (default: avhubert when that is a lip-reading folder), face_backend, device.
    """

    name = "wer"
    fields = ("wer",)
    needs = frozenset({GENERATED, TEXT})
    aggregate = "corpus"
    higher_is_better = {"wer": False}
    description = "word error rate of the AV-HuBERT lip reader on the generated video (corpus-level)"
    field_help = {"wer": "WER of the lip reader against the transcript, lower is better"}
    model_option = "lip_reader"
    model_env = "TALKFACE_LIP_READER"
    model_hint = LIP_READER_HINT
    default_model = registry.DEFAULT_LIP_READER

    def given_model_source(self, options) -> str | None:
        value = options.lip_reader
        if value is None:
            value = os.environ.get(self.model_env) or options.avhubert
        return value or os.environ.get(self.model_env) or None

    def load_model(self, source, options):
        if source is None:
            return super().load_model(source, options)
        return load_lip_reader(source, device=options.device, face_backend=options.face_backend)

    def needs_face_backend(self, options) -> bool:
        return True  # the lip reader's mouth crops

    def compute(self, media, context) -> dict:
        """Word errors of the lip reader's transcript of the generated video against the reference transcript."""
        reference_text = media.transcript  # first: a missing transcript skips the file before the costly decoding
        lip_reader = context.model(self)
        hypothesis = lip_reader(media.generated_frames)
        reader = getattr(lip_reader, "reader", None)
        if reader is not None:  # lower-case and round-trip through the tokenizer, as the AV-HuBERT reference scores
            reference_text = reader.normalize_reference(reference_text)
        counts = word_error_counts(reference_text, hypothesis)
        errors, words = int(counts["errors"]), int(counts["words"])
        return {"values": {"wer": errors / words if words else float("nan")},
                "counts": {"errors": errors, "words": words}, "details": {"hypothesis": hypothesis}}

    def summarise(self, results, context) -> dict:
        rows = self._with_value(results, "wer")  # files with reference words
        if not rows:
            return {}
        errors = sum(r["counts"]["errors"] for r in rows)
        words = sum(r["counts"]["words"] for r in rows)
        return {"wer": self.entry("wer", errors / words if words else float("nan"), len(rows))}
