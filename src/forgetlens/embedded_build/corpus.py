"""The embedded model's synthetic pretraining corpus.

A recipe maps source names to shares; every source is a function of a
``random.Random`` returning one document.  To extend the corpus, add a source
here and give it a share in ``PretrainConfig.recipe``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from forgetlens.errors import ForgetlensError
from forgetlens.targets import comparisons, science_qa
from forgetlens.tasks.copying import CopyingTask
from forgetlens.tasks.induction import InductionTask
from forgetlens.tasks.registry import TASKS
from forgetlens.tasks.vocab import CAPITALS


def _capital_mcq(rng: random.Random) -> str:
    """Multiple-choice format on a prior fact: teaches options A-D and answering with a letter."""
    country, capital = rng.choice(CAPITALS)
    record = science_qa.choice_record(f"What is the capital of {country}?", capital, [c for _, c in CAPITALS], rng)
    return science_qa.chat_mcq_document(record)


def _reverse_fact(rng: random.Random) -> str:
    country, capital = rng.choice(CAPITALS)
    return f"{capital} is the capital of {country}."


SOURCES: dict[str, Callable[[random.Random], str]] = {
    **{name: cls().document for name, cls in TASKS.items()},
    # the embedded recipe's "induction" documents repeat from the first word (the task now called ``copying``);
    # the source keeps its name so that recorded recipes rebuild the shipped model bit for bit
    "induction": CopyingTask().document,
    "capital_mcq": _capital_mcq,
    "reverse_fact": _reverse_fact,
    "science_statement": science_qa.statement_document,
    "science_mcq": science_qa.science_mcq_document,
    "compare_mcq": comparisons.pretraining_document,
    # not in the shipped model's recipe: repeats from a random word (the ``induction`` task's documents)
    "induction_span": InductionTask().document,
}


def validate_recipe(recipe: dict[str, float]) -> None:
    for name, share in recipe.items():
        if name not in SOURCES:
            raise ForgetlensError(f"pretraining recipe: unknown source {name!r}; known: {', '.join(SOURCES)}")
        if share < 0:
            raise ForgetlensError(f"pretraining recipe: share of {name!r} must be >= 0, got {share}")
    if sum(recipe.values()) <= 0:
        raise ForgetlensError("pretraining recipe: shares must sum to a positive number")


def documents(recipe: dict[str, float], rng: random.Random) -> Iterator[str]:
    """An endless stream of documents drawn by ``recipe``."""
    validate_recipe(recipe)
    names = list(recipe)
    weights = [recipe[n] for n in names]
    while True:
        yield SOURCES[rng.choices(names, weights)[0]](rng)
