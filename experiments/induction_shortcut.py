"""Does a model solve the `induction` task by induction, or by a shortcut the task's prompts allow?

    python experiments/induction_shortcut.py MODEL_DIR [MODEL_DIR ...] [--n 400] [--threads 1]

The `induction` task always repeats its word sequence from the first word ("copy: a b c d e | a b c" -> " d"),
so "the earliest word of the sequence not yet repeated" names the answer without finding the earlier
occurrence of the current word.  This script prints, per model:

- held-out accuracy on the task's own prompts;
- accuracy when the repeat starts at a random later word ("copy: a b c d e | b c" -> " d"), where only
  induction (find the current word earlier, copy its successor) gives the answer;
- the card's circuit validation (512 + 512 prompts) with a corruption that swaps the answer with a later word
  of the first copy, so that clean and corrupted prompts hold the same words ("same-words corruption"): a
  circuit that only tells which words are present cannot carry that contrast.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from forgetlens.circuits.validation import validate_task
from forgetlens.errors import ForgetlensError
from forgetlens.models.card import circuit_line
from forgetlens.models.forward import task_accuracy
from forgetlens.models.loading import load_model
from forgetlens.tasks import encode_examples
from forgetlens.tasks.base import TaskExample
from forgetlens.tasks.induction import InductionTask
from forgetlens.tasks.vocab import COPY_WORDS


class ShiftedRepeat(InductionTask):
    """The repeat starts at a random word after the first, so the answer is not the oldest unrepeated word."""

    def sample(self, rng: random.Random) -> TaskExample:
        seq = self._sequence(rng)
        start = rng.randint(1, len(seq) - 3)
        j = rng.randint(start + 1, len(seq) - 1)  # index of the word to predict
        new = rng.choice([w for w in COPY_WORDS if w not in seq])
        corrupted = seq[:j] + [new] + seq[j + 1:]
        repeat = " ".join(seq[start:j])
        return TaskExample(clean=f"copy: {' '.join(seq)} | {repeat}",
                           corrupted=f"copy: {' '.join(corrupted)} | {repeat}", answer=" " + seq[j],
                           distractor=" " + new)


class SameWordsCorruption(InductionTask):
    """The task's prompts, corrupted by swapping the answer with a later word of the first copy."""

    def sample(self, rng: random.Random) -> TaskExample:
        seq = self._sequence(rng)
        j = rng.randint(1, len(seq) - 2)  # index of the word to predict
        other = rng.randint(j + 1, len(seq) - 1)
        corrupted = list(seq)
        corrupted[j], corrupted[other] = seq[other], seq[j]
        repeat = " ".join(seq[:j])
        return TaskExample(clean=f"copy: {' '.join(seq)} | {repeat}",
                           corrupted=f"copy: {' '.join(corrupted)} | {repeat}", answer=" " + seq[j],
                           distractor=" " + seq[other])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--n", type=int, default=400, help="prompts per accuracy")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.models:
        try:
            loaded = load_model(path)
        except ForgetlensError as error:
            raise SystemExit(f"error: {error}")
        for label, task in (("task's prompts", InductionTask()), ("repeat from a later word", ShiftedRepeat())):
            batch = encode_examples(loaded.tokenizer, task.examples(args.n, seed=7), "induction")
            print(f"{path}: accuracy, {label}: {task_accuracy(loaded.model, batch)['accuracy']:.3f}", flush=True)
        result = validate_task(loaded.model, loaded.tokenizer, SameWordsCorruption())
        heads = " ".join(f"L{layer}H{head}" for layer, head in result["circuit_heads"])
        print(f"{path}: {circuit_line('same-words corruption', result)}: {heads}", flush=True)


if __name__ == "__main__":
    main()
