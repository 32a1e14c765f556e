"""The science-QA target task: records, prompt rendering and the synthetic generator.

Records follow SciKnowEval's multiple-choice layout so that the synthetic task,
SciKnowEval files and SciQ files all flow through the same code::

    {"question": str, "type": "mcq-4-choices",
     "choices": {"text": [4 x str], "label": ["A", "B", "C", "D"]},
     "answerKey": "B", "prompt": {"default": instruction}, "answer": ""}

Two synthetic generators share that layout:

* fact questions over a built-in table of element symbols and SI units.  The
  embedded base model reads every fact as a plain statement during pretraining
  and sees a share of them as multiple-choice questions.  Answering a held-out
  fact is recall of that one fact, so fine-tuning on other facts barely helps
  it (measured: 0.44 -> 0.49 after 120 SFT steps, docs/results/study-2026-11-24.md).
* comparison questions ("four solutions have pH 3, 7, 5 and 2; which is the
  most basic?"), the default target: a computed quantity, so a skill learnt on
  training questions carries over to held-out ones.  Questions are split once,
  by a hash of their text, into a pretraining pool (a small share of the
  embedded model's corpus, so it starts above chance) and a target pool (the
  fine-tuning train/eval questions): no target question is ever pretrained on.
"""

from __future__ import annotations

import hashlib
import random

LETTERS = ["A", "B", "C", "D"]
MCQ_INSTRUCTION = "Answer the multiple-choice question with the letter of the correct option only."

ELEMENTS = [
    ("hydrogen", "H"), ("helium", "He"), ("lithium", "Li"), ("carbon", "C"), ("nitrogen", "N"),
    ("oxygen", "O"), ("fluorine", "F"), ("neon", "Ne"), ("sodium", "Na"), ("magnesium", "Mg"),
    ("aluminium", "Al"), ("silicon", "Si"), ("phosphorus", "P"), ("sulfur", "S"), ("chlorine", "Cl"),
    ("argon", "Ar"), ("potassium", "K"), ("calcium", "Ca"), ("iron", "Fe"), ("copper", "Cu"),
    ("zinc", "Zn"), ("silver", "Ag"), ("tin", "Sn"), ("gold", "Au"), ("mercury", "Hg"),
    ("lead", "Pb"), ("iodine", "I"), ("nickel", "Ni"), ("cobalt", "Co"), ("platinum", "Pt"),
    ("titanium", "Ti"), ("chromium", "Cr"), ("manganese", "Mn"), ("bromine", "Br"), ("barium", "Ba"),
    ("uranium", "U"),
]
SI_UNITS = [
    ("force", "newton"), ("energy", "joule"), ("power", "watt"), ("pressure", "pascal"),
    ("electric charge", "coulomb"), ("voltage", "volt"), ("resistance", "ohm"), ("frequency", "hertz"),
    ("mass", "kilogram"), ("length", "metre"), ("time", "second"), ("temperature", "kelvin"),
    ("electric current", "ampere"), ("amount of substance", "mole"), ("luminous intensity", "candela"),
    ("magnetic flux", "weber"), ("capacitance", "farad"), ("inductance", "henry"),
]

# relation name -> (facts, question template, statement template)
RELATIONS: dict[str, tuple[list[tuple[str, str]], str, str]] = {
    "symbol": (ELEMENTS, "What is the chemical symbol of {s}?", "The chemical symbol of {s} is {o}."),
    "element": ([(o, s) for s, o in ELEMENTS], "Which element has the chemical symbol {s}?",
                "The element with the chemical symbol {s} is {o}."),
    "unit": (SI_UNITS, "What is the SI unit of {s}?", "The SI unit of {s} is the {o}."),
}


def science_facts() -> list[tuple[str, str, str]]:
    """All (relation, subject, object) triples of the built-in table."""
    return [(rel, s, o) for rel, (facts, _, _) in RELATIONS.items() for s, o in facts]


def mcq_record(relation: str, subject: str, answer: str, rng: random.Random) -> dict:
    """A SciKnowEval-style 4-choice record asking for ``answer`` given ``subject``."""
    facts, question, _ = RELATIONS[relation]
    wrong = rng.sample([o for _, o in facts if o != answer], 3)
    options = wrong + [answer]
    rng.shuffle(options)
    return {
        "question": question.format(s=subject),
        "type": "mcq-4-choices",
        "choices": {"text": options, "label": list(LETTERS)},
        "answerKey": LETTERS[options.index(answer)],
        "answer": "",
        "prompt": {"default": MCQ_INSTRUCTION},
        "details": {"source": "forgetlens-synthetic", "subtask": relation},
    }


def mcq_user_text(record: dict) -> str:
    """The user turn for a multiple-choice record: instruction, question, lettered options."""
    options = "\n".join(f"{label}. {text}" for label, text in zip(record["choices"]["label"], record["choices"]["text"]))
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
    record = mcq_record(relation, subject, obj, rng)
    return chat_text(mcq_user_text(record), record["answerKey"])


# kind -> (question template over the four values, option template, which value answers)
COMPARISONS: dict[str, tuple[str, str, str]] = {
    "most_basic": ("Four solutions have pH {v}. Which solution is the most basic?", "pH {d}", "max"),
    "most_acidic": ("Four solutions have pH {v}. Which solution is the most acidic?", "pH {d}", "min"),
    "heaviest": ("Four samples weigh {v} kilograms. Which sample is the heaviest?", "{d} kilograms", "max"),
    "lowest_pressure": ("Four gases are at {v} atmospheres. Which gas has the lowest pressure?",
                        "{d} atmospheres", "min"),
}
PRETRAIN_POOL_SHARE = 4
"""One comparison question in this many (by a hash of its text) belongs to the pretraining pool."""


def comparison_pool(question: str) -> str:
    """``"pretrain"`` or ``"target"``: a fixed, seed-free partition of comparison questions by their text."""
    digest = hashlib.sha256(question.encode()).digest()
    return "pretrain" if digest[0] % PRETRAIN_POOL_SHARE == 0 else "target"


def comparison_record(rng: random.Random, pool: str) -> dict:
    """A random comparison question from ``pool`` ("pretrain" or "target"), options in random order."""
    while True:
        kind = rng.choice(sorted(COMPARISONS))
        question_template, option, pick = COMPARISONS[kind]
        values = rng.sample(range(1, 10), 4)
        question = question_template.format(v=f"{values[0]}, {values[1]}, {values[2]} and {values[3]}")
        if comparison_pool(question) == pool:
            break
    answer = max(values) if pick == "max" else min(values)
    options = list(values)
    rng.shuffle(options)
    return {
        "question": question,
        "type": "mcq-4-choices",
        "choices": {"text": [option.format(d=d) for d in options], "label": list(LETTERS)},
        "answerKey": LETTERS[options.index(answer)],
        "answer": "",
        "prompt": {"default": MCQ_INSTRUCTION},
        "details": {"source": "forgetlens-synthetic", "subtask": kind},
    }


def comparison_document(rng: random.Random) -> str:
    """One comparison question from the pretraining pool, answered, in chat format (pretraining corpus)."""
    record = comparison_record(rng, "pretrain")
    return chat_text(mcq_user_text(record), record["answerKey"])
