"""Copying from the start: after ``copy: A B C D | A B`` predict ``C``.

A random word sequence is shown, then repeated from its first word up to some point; the next word is its
successor in the first copy.  The corrupted prompt swaps that successor in the first copy for a new word, which
becomes the distractor.  Because the repeat always starts at the first word, "the earliest word not yet
repeated" answers it without previous-token and induction heads; the embedded model answers it that way
(``experiments/induction_shortcut.py``).  This was forgetlens's ``induction`` task before 2026-11-29; it stays as
the embedded model's copying capability.  :mod:`forgetlens.tasks.induction` is the task that needs induction.
"""

from __future__ import annotations

import random

from forgetlens.tasks.base import PriorTask, TaskExample
from forgetlens.tasks.vocab import COPY_WORDS

MIN_LEN, MAX_LEN = 6, 10
"""Bounds of the random sequence's length, in words."""


def word_sequence(rng: random.Random) -> list[str]:
    """Distinct words from ``COPY_WORDS``, MIN_LEN to MAX_LEN of them."""
    return rng.sample(COPY_WORDS, rng.randint(MIN_LEN, MAX_LEN))


class CopyingTask(PriorTask):
    name = "copying"
    description = "continue a repeat that starts at the sequence's first word (answerable without induction)"

    def vocabulary(self) -> list[str]:
        return [" " + w for w in COPY_WORDS]

    def repeat_span(self, rng: random.Random, seq: list[str]) -> tuple[int, int]:
        """(index of the repeat's first word, index of the word to predict): here the repeat starts at 0."""
        return 0, rng.randint(1, len(seq) - 1)

    def sample(self, rng: random.Random) -> TaskExample:
        seq = word_sequence(rng)
        start, j = self.repeat_span(rng, seq)
        new = rng.choice([w for w in COPY_WORDS if w not in seq])
        corrupted_seq = seq[:j] + [new] + seq[j + 1 :]
        repeat = " ".join(seq[start:j])
        return TaskExample(
            clean=f"copy: {' '.join(seq)} | {repeat}",
            corrupted=f"copy: {' '.join(corrupted_seq)} | {repeat}",
            answer=" " + seq[j],
            distractor=" " + new,
        )

    def document(self, rng: random.Random) -> str:
        seq = " ".join(word_sequence(rng))
        return f"copy: {seq} | {seq}"
