"""The default synthetic target: which of four measured quantities is the largest or the smallest.

"Four samples have a mass of 2, 0, 1 and 3 kg. Which mass is the smallest?", options "2 kg", "0 kg", ...
Every (quantity, set of four distinct digits) pair belongs, by a fixed seed, to exactly one of two halves:
the embedded model practises the *pretraining* half in its last pretraining stage
(``PretrainConfig.compare_stage``), and fine-tuning trains and evaluates on the *target* half only, so held-out
questions ask about digit sets neither pretraining nor fine-tuning ever asked about.  The skill is computed,
not memorised: measured here, practice on one half raised letter accuracy on the other from 0.22 to 0.50,
leaving room for fine-tuning to add more.
"""

from __future__ import annotations

import functools
import itertools
import random

from forgetlens.targets import science_qa

QUANTITIES = [("mass", "kg"), ("length", "m"), ("time", "s"), ("temperature", "K")]
"""(quantity, SI unit symbol) pairs the questions are about."""

Pair = tuple[str, str, tuple[int, int, int, int]]  # (quantity, unit, four distinct digits in increasing order)


def compare_record(quantity: str, unit: str, digits: tuple[int, ...], rng: random.Random) -> dict:
    """One question over ``digits`` in a random order, asking for the largest or the smallest value.

    The draws (shuffle values, choose the ask, shuffle options) are part of the embedded model's recipe.
    """
    values = list(digits)
    rng.shuffle(values)
    ask = rng.choice(["largest", "smallest"])
    answer = max(values) if ask == "largest" else min(values)
    question = (
        f"Four samples have a {quantity} of {values[0]}, {values[1]}, {values[2]} and {values[3]} {unit}. "
        f"Which {quantity} is the {ask}?"
    )
    options = [f"{v} {unit}" for v in values]
    rng.shuffle(options)
    return science_qa.options_record(question, options, f"{answer} {unit}", subtask="compare")


@functools.cache
def halves() -> tuple[list[Pair], list[Pair]]:
    """(pretraining pairs, target pairs): each of the 840 (quantity, unit, digit set) pairs in exactly one."""
    pairs = [(q, u, digits) for q, u in QUANTITIES for digits in itertools.combinations(range(10), 4)]
    random.Random("compare-halves").shuffle(pairs)
    return pairs[: len(pairs) // 2], pairs[len(pairs) // 2 :]


def target_records() -> list[dict]:
    """One record per target-half pair (420), drawn once by a fixed seed; fine-tuning splits them by its own."""
    rng = random.Random("compare-target:0")
    return [compare_record(q, u, d, rng) for q, u, d in halves()[1]]


SHORT_INSTRUCTION = "Answer with the value and its unit only."


def short_answer_records() -> list[dict]:
    """The target half's questions without options, answered with the value ("3 kg"): a filling record per
    question of :func:`target_records`, scored ``one_value`` (``targets/rewards.py``: the reply states exactly one
    number, the answer's; "The smallest mass is 3 kg." counts)."""
    return [
        {
            "question": r["question"],
            "type": "filling",
            "choices": {"text": [], "label": []},
            "answerKey": "",
            "answer": r["choices"]["text"][science_qa.LETTERS.index(r["answerKey"])],
            "prompt": {"default": SHORT_INSTRUCTION},
            "details": {**r["details"], "subtask": "compare-short", "scoring": "one_value"},
        }
        for r in target_records()
    ]


def pretraining_document(rng: random.Random) -> str:
    """A comparison question from the pretraining half, answered with its letter (pretraining corpus)."""
    return science_qa.chat_mcq_document(compare_record(*rng.choice(halves()[0]), rng))


def target_document(rng: random.Random) -> str:
    """A target-half question in the same chat format, for measuring the base model (never trained on)."""
    return science_qa.chat_mcq_document(compare_record(*rng.choice(halves()[1]), rng))
