"""Induction / copying: after ``... A B ... A`` predict ``B``.

A random word sequence is shown, then repeated from its first word up to some
point; the next word is its successor in the first copy.  The corrupted prompt
swaps that successor in the first copy for a new word, which becomes the
distractor.  Sequence lengths vary, so no fixed positional offset gives the
answer; but because the repeat always starts at the first word, "the earliest
word not yet repeated" does, without previous-token and induction heads.  The
embedded model uses that shortcut: it fails when the repeat starts later
(``experiments/induction_shortcut.py``; README, "Status").
"""

from __future__ import annotations

import random

from forgetlens.tasks.base import PriorTask, TaskExample
from forgetlens.tasks.vocab import COPY_WORDS


class InductionTask(PriorTask):
    name = "induction"
    description = "copy the word that followed the current word earlier in the sequence"

    def __init__(self, min_len: int = 6, max_len: int = 10):
        self.min_len, self.max_len = min_len, max_len

    def vocabulary(self) -> list[str]:
        return [" " + w for w in COPY_WORDS]

    def _sequence(self, rng: random.Random) -> list[str]:
        return rng.sample(COPY_WORDS, rng.randint(self.min_len, self.max_len))

    def sample(self, rng: random.Random) -> TaskExample:
        seq = self._sequence(rng)
        j = rng.randint(1, len(seq) - 1)  # index of the word to predict in the repeat
        new = rng.choice([w for w in COPY_WORDS if w not in seq])
        corrupted_seq = seq[:j] + [new] + seq[j + 1 :]
        repeat = " ".join(seq[:j])
        return TaskExample(
            clean=f"copy: {' '.join(seq)} | {repeat}",
            corrupted=f"copy: {' '.join(corrupted_seq)} | {repeat}",
            answer=" " + seq[j],
            distractor=" " + new,
        )

    def document(self, rng: random.Random) -> str:
        seq = " ".join(self._sequence(rng))
        return f"copy: {seq} | {seq}"

    def span_document(self, rng: random.Random) -> str:
        """A sequence, then a repeat of it from a random word on (corpus source ``induction_span``): "the
        earliest word not yet repeated" does not predict the repeat here; finding the current word earlier and
        copying its successor does."""
        seq = self._sequence(rng)
        start = rng.randint(0, len(seq) - 2)
        return f"copy: {' '.join(seq)} | {' '.join(seq[start:])}"
