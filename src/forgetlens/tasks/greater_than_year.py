"""Greater-than over years, after Hanna et al. (2023), for tokenizers that split digits one by one.

"The war lasted from the year 1732 to the year 17" -> a tens digit above 3.

Hanna et al. ask GPT-2 for the two-digit token YY of the end year; Qwen-family and
SmolLM2 tokenizers (and the embedded one) write every digit as its own token,
so the answer here is the end year's next digit, its tens digit.  As in Hanna
et al., the task is scored over answer sets, not one digit: the digits above
the start year's tens digit are valid, those below it invalid, and the equal
digit counts as neither (it gives a valid end year only for some units
digits).  The metric is the probability mass on valid digits minus the mass on
invalid ones (``prob_diff``, Hanna et al.'s probability difference) or the
mean logit of valid digits minus that of invalid ones (``logit_diff``); a
prompt counts as answered when the probability difference is above 0.  The
corrupted prompt starts the period in year XX01 (Hanna et al.'s "01"
baseline), after which almost every digit gives a valid end year, so the
clean prompt's preference has no reason to survive.

Not in the embedded model's default task set (the embedded model never saw
this template); list it in a config's ``tasks`` for real models.
"""

from __future__ import annotations

import random

from forgetlens.tasks.base import PriorTask, TaskExample
from forgetlens.tasks.vocab import DIGITS, EVENTS

TEMPLATE = "The {event} lasted from the year {century}{tens}{units} to the year {century}"


class GreaterThanYearTask(PriorTask):
    name = "greater_than_year"
    description = "Hanna et al.'s year comparison, digit by digit: the end year's tens digit exceeds the start's"

    def vocabulary(self) -> list[str]:
        return list(DIGITS)

    def sample(self, rng: random.Random) -> TaskExample:
        event, century = rng.choice(EVENTS), rng.randint(11, 19)
        tens, units = rng.randint(2, 8), rng.randint(0, 9)
        answer, distractor = rng.randint(tens + 1, 9), rng.randint(1, tens - 1)
        return TaskExample(
            clean=TEMPLATE.format(event=event, century=century, tens=tens, units=units),
            corrupted=TEMPLATE.format(event=event, century=century, tens=0, units=1),
            answer=str(answer),
            distractor=str(distractor),
            valid=tuple(DIGITS[tens + 1 :]),
            invalid=tuple(DIGITS[:tens]),
        )

    def document(self, rng: random.Random) -> str:
        event, century = rng.choice(EVENTS), rng.randint(11, 19)
        start = rng.randint(10, 89)
        end = rng.randint(start + 1, 99)
        return f"The {event} lasted from the year {century}{start} to the year {century}{end}."
