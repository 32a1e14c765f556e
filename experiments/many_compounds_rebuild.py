"""Rebuild the embedded model with a target over 400 invented compounds, and write the target-pool questions.

    python experiments/many_compounds_rebuild.py /tmp/v3/model        # ~34 min on 2 cores
    COMPOUNDS=240 ATTRIBUTES=colour python experiments/many_compounds_rebuild.py /tmp/v4/model
    COMPOUNDS=240 ATTRIBUTES=colour python experiments/many_compounds_rebuild.py --measure /tmp/v4/model
    forgetlens finetune --method sft --model /tmp/v3/model --data /tmp/v3/target.jsonl --seed 100 --out ...

Why: with 90 real facts the embedded model memorises each drilled question and nothing carries over to facts
it was not asked about (README, "What the default study found"). Allen-Zhu & Li (2023, "Physics of Language
Models 3.1") saw question answering carry over to held-out individuals when there were many individuals, each
stated in several phrasings, with questions in pretraining on half of them. This build tries that regime:

- 400 invented compounds (names from syllables), two attributes each (colour, use), six values per attribute
  shared by all compounds, so no option is familiar from one half only;
- four phrasings per attribute statement (15 % of the main corpus), multiple-choice questions about the first
  200 compounds only (5 %, and half of format sub-stage 2); the target asks about the other 200.

Measured on 2026-11-24 (one build, seed 0, 1,963 s of training): prior tasks held out induction 0.99, IOI 1.0,
greater-than 0.995, fact recall 1.0; but the compound facts were barely learnt. Completing a statement ("The
colour of X is", best of the six values, all 200 compounds of a half) scored 0.48-0.50 for colour and
0.25-0.28 for use (chance 0.167), and multiple choice scored 0.29 on the asked half and 0.27 on the target
half (chance 0.25). SFT on the target half (seed 100, 120 steps, 240 held-out records) did not move it: 0.229
-> 0.233 at lr 1e-4 and 0.246 at 3e-4. This budget and model size do not store 800 facts well enough to test
transfer.

A second build with ``COMPOUNDS=240 ATTRIBUTES=colour`` (240 facts, so about 3x the exposures each; 2,040 s)
stored them better: statement completion 0.68 on the asked half and 0.66 on the target half (six-way, chance
0.167). Multiple choice reached 0.415 on the asked half but stayed at 0.29 on the target half, so reading a
fact still did not make it answerable. SFT on the target half (36 held-out compounds x 2 option orders): 0.167
-> 0.25 at lr 1e-4 and 0.25 (best 0.32) at 3e-4, within noise of 72 records. This build also lost induction
(0.37) and IOI (0.21) in the format stage, which has no consolidation here.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

from forgetlens.config import PretrainConfig, FormatStage
from forgetlens.models import corpus
from forgetlens.models.pretrain import pretrain_base, mcq_letter_accuracy
from forgetlens.models.loading import load_model
from forgetlens.tasks import science_qa as sq

_rng = random.Random("compounds")
ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
VOWELS = ["a", "e", "i", "o", "u"]
SUFFIX = ["ane", "ide", "ite", "ol", "ene", "ate"]
names = set()
N_COMPOUNDS = int(os.environ.get("COMPOUNDS", "400"))
while len(names) < N_COMPOUNDS:
    names.add("".join(_rng.choice(ONSETS) + _rng.choice(VOWELS) for _ in range(2)) + _rng.choice(SUFFIX))
NAMES = sorted(names)
_rng.shuffle(NAMES)
ATTRS = {
    "colour": (["red", "blue", "green", "yellow", "white", "black"], "What colour is {s}?",
               ["{s} is a {o} compound.", "The colour of {s} is {o}.", "{s} has a {o} colour.", "Samples of {s} look {o}."]),
    "use": (["fuel", "dye", "solvent", "fertiliser", "medicine", "explosive"], "What is {s} used as?",
            ["{s} is used as a {o}.", "The main use of {s} is as a {o}.", "{s} serves as a {o}.", "People use {s} as a {o}."]),
}
ATTRS = {a: ATTRS[a] for a in os.environ.get("ATTRIBUTES", "colour,use").split(",")}
FACTS = {(n, a): _rng.choice(ATTRS[a][0]) for n in NAMES for a in ATTRS}
MCQ_NAMES, TARGET_NAMES = NAMES[:N_COMPOUNDS // 2], NAMES[N_COMPOUNDS // 2:]


def record(name, attr, rng):
    values, question, _ = ATTRS[attr]
    return sq.choice_record(question.format(s=name), FACTS[(name, attr)], values, rng)


def statement(rng):
    name, attr = rng.choice(NAMES), rng.choice(list(ATTRS))
    return rng.choice(ATTRS[attr][2]).format(s=name, o=FACTS[(name, attr)])


def mcq(pool):
    def make(rng):
        return sq.chat_mcq_document(record(rng.choice(pool), rng.choice(list(ATTRS)), rng))
    return make


corpus.SOURCES["compound_statement"] = statement
corpus.SOURCES["compound_mcq"] = mcq(MCQ_NAMES)


def measure(model_dir: Path) -> None:
    """Letter accuracy on each half's questions, and statement completion (best of the attribute's values)."""
    import torch

    loaded = load_model(model_dir)
    model, tokenizer = loaded.model, loaded.tokenizer
    model.eval()
    for half, names in [("asked half", MCQ_NAMES), ("target half", TARGET_NAMES)]:
        print(half, "multiple choice", mcq_letter_accuracy(model, tokenizer, mcq(names), 400, 5))
        for attr, (values, _, phrasings) in ATTRS.items():
            ids = [tokenizer(" " + v, add_special_tokens=False)["input_ids"][0] for v in values]
            prefix = phrasings[1].split(" {o}")[0]  # "The colour of {s} is", "The main use of {s} is as a"
            correct = 0
            for name in names:
                x = tokenizer(prefix.format(s=name), return_tensors="pt", add_special_tokens=False)["input_ids"]
                with torch.no_grad():
                    best = int(model(input_ids=x).logits[0, -1, ids].argmax())
                correct += values[best] == FACTS[(name, attr)]
            print(half, attr, "statement completion", round(correct / len(names), 3), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--measure":
        measure(Path(sys.argv[2]))
        sys.exit()
    out = Path(sys.argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    (out.parent / "target.jsonl").write_text("\n".join(json.dumps(record(n, a, rng)) for n in TARGET_NAMES
                                                      for a in ATTRS for _ in range(2)) + "\n")
    cfg = PretrainConfig(seed=0)
    cfg.recipe = {"induction": 0.18, "ioi": 0.15, "greater_than": 0.10, "fact_recall": 0.07, "capital_mcq": 0.12,
                  "science_statement": 0.10, "science_mcq": 0.03, "reverse_fact": 0.05,
                  "compound_statement": 0.15, "compound_mcq": 0.05}
    cfg.format_stages = [
        FormatStage(500, {"capital_mcq": 1.0}),
        FormatStage(500, {"compound_mcq": 0.5, "science_mcq": 0.3, "capital_mcq": 0.2}),
        FormatStage(800, {"induction": 0.2, "ioi": 0.2, "greater_than": 0.15, "fact_recall": 0.1,
                          "compound_statement": 0.1, "reverse_fact": 0.05, "capital_mcq": 0.1, "compound_mcq": 0.05,
                          "science_mcq": 0.05}),
    ]
    card = pretrain_base(cfg, out, resume="--resume" in sys.argv)
    print(json.dumps({k: round(v["accuracy"], 3) for k, v in card["held_out_accuracy"].items()}))
    measure(out)
