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

from forgetlens.tasks.copying import CopyingTask, word_sequence


class InductionTask(CopyingTask):
    name = "induction"
    description = "copy the word that followed the current word earlier (repeat from a random word)"

    def repeat_span(self, rng: random.Random, seq: list[str]) -> tuple[int, int]:
        """The repeat starts at a random word after the first; the word to predict follows it."""
        start = rng.randint(1, len(seq) - 2)
        return start, rng.randint(start + 1, len(seq) - 1)

    def document(self, rng: random.Random) -> str:
        """A sequence, then a repeat of its tail from a random word on (the embedded corpus source
        ``induction_span``)."""
        seq = word_sequence(rng)
        start = rng.randint(0, len(seq) - 2)
        return f"copy: {' '.join(seq)} | {' '.join(seq[start:])}"
