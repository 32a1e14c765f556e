"""Fact recall from a built-in table: "The capital of France is" -> " Paris".

The corrupted prompt names another country; its capital is the distractor.
The facts are memorised by design (held-out evaluation draws new template and
pair combinations, not new facts).
"""

from __future__ import annotations

import random

from forgetlens.tasks.base import PriorTask, TaskExample
from forgetlens.tasks.vocab import CAPITALS

TEMPLATES = ["The capital of {c} is", "The capital city of {c} is"]


class FactRecallTask(PriorTask):
    name = "fact_recall"
    description = "recall the capital of a country from a built-in table"

    def __init__(self, facts: list[tuple[str, str]] | None = None):
        self.facts = list(facts or CAPITALS)

    def vocabulary(self) -> list[str]:
        return [" " + w for pair in self.facts for w in pair]

    def sample(self, rng: random.Random) -> TaskExample:
        (country, capital), (other, other_capital) = rng.sample(self.facts, 2)
        template = rng.choice(TEMPLATES)
        return TaskExample(
            clean=template.format(c=country),
            corrupted=template.format(c=other),
            answer=" " + capital,
            distractor=" " + other_capital,
        )

    def document(self, rng: random.Random) -> str:
        country, capital = rng.choice(self.facts)
        return rng.choice(TEMPLATES).format(c=country) + f" {capital}."
