"""Greater-than, in a single-token form: "The larger of 3 and 8 is " -> "8".

Hanna et al. (2023) study year comparison in GPT-2; digits are single tokens
in Qwen-family tokenizers only one at a time, so forgetlens compares two digits.
The corrupted prompt replaces the larger digit by one below the smaller, so
the smaller digit of the clean prompt (the distractor) becomes the answer.
"""

from __future__ import annotations

import random

from forgetlens.tasks.base import PriorTask, TaskExample

TEMPLATES = ["The larger of {a} and {b} is ", "Of {a} and {b}, the larger number is "]


class GreaterThanTask(PriorTask):
    name = "greater_than"
    description = "say which of two digits is larger"

    def vocabulary(self) -> list[str]:
        return [str(d) for d in range(10)]

    def sample(self, rng: random.Random) -> TaskExample:
        small = rng.randint(1, 8)
        large = rng.randint(small + 1, 9)
        lower = rng.randint(0, small - 1)
        template = rng.choice(TEMPLATES)
        first_is_large = rng.random() < 0.5
        if first_is_large:
            clean, corrupted = template.format(a=large, b=small), template.format(a=lower, b=small)
        else:
            clean, corrupted = template.format(a=small, b=large), template.format(a=small, b=lower)
        return TaskExample(clean=clean, corrupted=corrupted, answer=str(large), distractor=str(small))

    def document(self, rng: random.Random) -> str:
        a, b = rng.sample(range(10), 2)
        return rng.choice(TEMPLATES).format(a=a, b=b) + str(max(a, b)) + "."
