"""The science-QA target task: records, prompt rendering and the synthetic generator.

Records follow SciKnowEval's multiple-choice layout so that the synthetic task,
SciKnowEval files and SciQ files all flow through the same code::

    {"question": str, "type": "mcq-4-choices",
     "choices": {"text": [4 x str], "label": ["A", "B", "C", "D"]},
     "answerKey": "B", "prompt": {"default": instruction}, "answer": ""}

The synthetic generator asks about a built-in table of element symbols and SI
units.  The embedded base model reads every fact as a plain statement during
pretraining but sees only a small share of them as multiple-choice questions,
so it starts above chance on the target task and fine-tuning has something to
elicit.
"""

from __future__ import annotations

import random

LETTERS = ["A", "B", "C", "D"]
MCQ_INSTRUCTION = "Answer the multiple-choice question with the letter of the correct option only."

ELEMENTS = [
    ("hydrogen", "H"),
    ("helium", "He"),
    ("lithium", "Li"),
    ("carbon", "C"),
    ("nitrogen", "N"),
    ("oxygen", "O"),
    ("fluorine", "F"),
    ("neon", "Ne"),
    ("sodium", "Na"),
    ("magnesium", "Mg"),
    ("aluminium", "Al"),
    ("silicon", "Si"),
    ("phosphorus", "P"),
    ("sulfur", "S"),
    ("chlorine", "Cl"),
    ("argon", "Ar"),
    ("potassium", "K"),
    ("calcium", "Ca"),
    ("iron", "Fe"),
    ("copper", "Cu"),
    ("zinc", "Zn"),
    ("silver", "Ag"),
    ("tin", "Sn"),
    ("gold", "Au"),
    ("mercury", "Hg"),
    ("lead", "Pb"),
    ("iodine", "I"),
    ("nickel", "Ni"),
    ("cobalt", "Co"),
    ("platinum", "Pt"),
    ("titanium", "Ti"),
    ("chromium", "Cr"),
    ("manganese", "Mn"),
    ("bromine", "Br"),
    ("barium", "Ba"),
    ("uranium", "U"),
]
SI_UNITS = [
    ("force", "newton"),
    ("energy", "joule"),
    ("power", "watt"),
    ("pressure", "pascal"),
    ("electric charge", "coulomb"),
    ("voltage", "volt"),
    ("resistance", "ohm"),
    ("frequency", "hertz"),
    ("mass", "kilogram"),
    ("length", "metre"),
    ("time", "second"),
    ("temperature", "kelvin"),
    ("electric current", "ampere"),
    ("amount of substance", "mole"),
    ("luminous intensity", "candela"),
    ("magnetic flux", "weber"),
    ("capacitance", "farad"),
    ("inductance", "henry"),
]

# relation name -> (facts, question template, statement template)
RELATIONS: dict[str, tuple[list[tuple[str, str]], str, str]] = {
    "symbol": (ELEMENTS, "What is the chemical symbol of {s}?", "The chemical symbol of {s} is {o}."),
    "element": (
        [(o, s) for s, o in ELEMENTS],
        "Which element has the chemical symbol {s}?",
        "The element with the chemical symbol {s} is {o}.",
    ),
    "unit": (SI_UNITS, "What is the SI unit of {s}?", "The SI unit of {s} is the {o}."),
}


def science_facts() -> list[tuple[str, str, str]]:
    """All (relation, subject, object) triples of the built-in table."""
    return [(rel, s, o) for rel, (facts, _, _) in RELATIONS.items() for s, o in facts]


def options_record(question: str, options: list[str], answer: str, **details) -> dict:
    """A SciKnowEval-style 4-choice record with ``options`` in the given order; ``answer`` must be one of them."""
    return {
        "question": question,
        "type": "mcq-4-choices",
        "choices": {"text": options, "label": list(LETTERS)},
        "answerKey": LETTERS[options.index(answer)],
        "answer": "",
        "prompt": {"default": MCQ_INSTRUCTION},
        "details": {"source": "forgetlens-synthetic", **details},
    }


def choice_record(question: str, answer: str, candidates: list[str], rng: random.Random, **details) -> dict:
    """A 4-choice record: three wrong options drawn from ``candidates``, shuffled together with ``answer``.

    The draws (``rng.sample`` then ``rng.shuffle``) are part of the embedded model's recipe: changing their
    order changes the pretraining corpus.
    """
    options = rng.sample([c for c in candidates if c != answer], 3) + [answer]
    rng.shuffle(options)
    return options_record(question, options, answer, **details)


def mcq_record(relation: str, subject: str, answer: str, rng: random.Random) -> dict:
    """A 4-choice record asking for ``answer`` given ``subject``; wrong options from the relation's objects."""
    facts, question, _ = RELATIONS[relation]
    return choice_record(question.format(s=subject), answer, [o for _, o in facts], rng, subtask=relation)


def chat_mcq_document(record: dict) -> str:
    """A multiple-choice record as one chat exchange answered with its key letter (pretraining corpus)."""
    return chat_text(mcq_user_text(record), record["answerKey"])


def mcq_user_text(record: dict) -> str:
    """The user turn for a multiple-choice record: instruction, question, lettered options."""
    options = "\n".join(
        f"{label}. {text}" for label, text in zip(record["choices"]["label"], record["choices"]["text"])
    )
    instruction = (record.get("prompt") or {}).get("default") or MCQ_INSTRUCTION
    return f"{instruction}\n{record['question']}\n{options}"


def chat_text(user: str, assistant: str | None = None) -> str:
    """Qwen-style chat rendering (the embedded tokenizer's chat template produces the same text)."""
    text = f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    if assistant is not None:
        text += f"{assistant}<|im_end|>"
    return text


def statement_document(rng: random.Random) -> str:
    """A plain statement of one science fact (pretraining corpus)."""
    relation, subject, obj = rng.choice(science_facts())
    return RELATIONS[relation][2].format(s=subject, o=obj)


def science_mcq_document(rng: random.Random, relation: str | None = None) -> str:
    """One science multiple-choice exchange in chat format (pretraining corpus), optionally of one relation."""
    relation, subject, obj = rng.choice([f for f in science_facts() if relation in (None, f[0])])
    return chat_mcq_document(mcq_record(relation, subject, obj, rng))


def user_text(record: dict) -> str:
    """The user turn for any target record (multiple choice or filling)."""
    if record.get("type") == "filling":
        instruction = (record.get("prompt") or {}).get("default", "")
        return f"{instruction}\n{record['question']}".strip()
    return mcq_user_text(record)


def gold_completion(record: dict) -> str:
    """What SFT trains on: the answer letter, or the reference answer for filling records."""
    return record["answer"] if record.get("type") == "filling" else record["answerKey"]
