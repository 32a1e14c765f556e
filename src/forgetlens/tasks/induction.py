"""Induction: after ``... A B ... A`` predict ``B``, with the repeat starting at a random word.

A random word sequence is shown, then repeated from a word after its first (position ``start`` >= 1) up to some
point; the next word is its successor in the first copy.  The corrupted prompt swaps that successor in the first
copy for a new word, which becomes the distractor.  Since the repeat never starts at the first word, neither
"the earliest word not yet repeated" nor any fixed offset from the separator gives the answer: the model must
find the current word earlier in the context and copy what followed it (previous-token heads feeding induction
heads, Olsson et al. 2022).  :mod:`forgetlens.tasks.copying` is the variant that repeats from the start.
"""

from __future__ import annotations

import random

from forgetlens.tasks.base import PriorTask, TaskExample
from forgetlens.tasks.copying import word_sequence
from forgetlens.tasks.vocab import COPY_WORDS


class InductionTask(PriorTask):
    name = "induction"
    description = "copy the word that followed the current word earlier (repeat from a random word)"

    def vocabulary(self) -> list[str]:
        return [" " + w for w in COPY_WORDS]

    def sample(self, rng: random.Random) -> TaskExample:
        seq = word_sequence(rng)
        start = rng.randint(1, len(seq) - 2)  # the repeat's first word: never the sequence's first
        j = rng.randint(start + 1, len(seq) - 1)  # index of the word to predict
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
        """A sequence, then a repeat of its tail from a random word on (the embedded corpus source
        ``induction_span``)."""
        seq = word_sequence(rng)
        start = rng.randint(0, len(seq) - 2)
        return f"copy: {' '.join(seq)} | {' '.join(seq[start:])}"
