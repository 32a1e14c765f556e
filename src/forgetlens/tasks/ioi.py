"""Indirect-object identification (Wang et al. 2022), in a synthetic form.

"When Mary and John went to the store, John gave a drink to" -> " Mary".
The corrupted prompt replaces the second mention of the subject by the indirect
object, which makes the subject the right answer (the distractor).
"""

from __future__ import annotations

import random

from forgetlens.tasks.base import PriorTask, TaskExample
from forgetlens.tasks.vocab import NAMES, OBJECTS, PLACES

TEMPLATES = [
    "When {A} and {B} went to the {place}, {S} gave a {obj} to",
    "After {A} and {B} met at the {place}, {S} handed a {obj} to",
    "Then {A} and {B} had a long day at the {place}, and {S} gave a {obj} to",
]


class IOITask(PriorTask):
    name = "ioi"
    description = "name moving: complete 'A and B ..., B gave X to' with A"

    def vocabulary(self) -> list[str]:
        return [" " + n for n in NAMES]

    def _fill(self, rng: random.Random) -> tuple[str, str, str, str, str]:
        template = rng.choice(TEMPLATES)
        io, s = rng.sample(NAMES, 2)
        a, b = (io, s) if rng.random() < 0.5 else (s, io)
        return template, io, s, a, b

    def sample(self, rng: random.Random) -> TaskExample:
        template, io, s, a, b = self._fill(rng)
        place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
        fmt = dict(A=a, B=b, place=place, obj=obj)
        return TaskExample(
            clean=template.format(S=s, **fmt),
            corrupted=template.format(S=io, **fmt),
            answer=" " + io,
            distractor=" " + s,
        )

    def document(self, rng: random.Random) -> str:
        template, io, s, a, b = self._fill(rng)
        text = template.format(A=a, B=b, S=s, place=rng.choice(PLACES), obj=rng.choice(OBJECTS))
        return f"{text} {io}."
