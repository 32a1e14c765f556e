"""Rebuild the embedded model with a target over 400 invented compounds, and write the target-pool questions.

    python experiments/many_compounds_rebuild.py build /tmp/v3/model        # ~34 min on 2 cores
    python experiments/many_compounds_rebuild.py build /tmp/v4/model --compounds 240 --attributes colour
    python experiments/many_compounds_rebuild.py measure /tmp/v4/model --compounds 240 --attributes colour
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

A second build with ``--compounds 240 --attributes colour`` (240 facts, so about 3x the exposures each; 2,040 s)
stored them better: statement completion 0.68 on the asked half and 0.66 on the target half (six-way, chance
0.167). Multiple choice reached 0.415 on the asked half but stayed at 0.29 on the target half, so reading a
fact still did not make it answerable. SFT on the target half (36 held-out compounds x 2 option orders): 0.167
-> 0.25 at lr 1e-4 and 0.25 (best 0.32) at 3e-4, within noise of 72 records. This build also lost induction
(0.37) and IOI (0.21) in the format stage, which has no consolidation here.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

from forgetlens.config import FormatStage, unpenalised_pretrain_config
from forgetlens.models import corpus
from forgetlens.models.loading import load_model
from forgetlens.models.pretrain import mcq_letter_accuracy, pretrain_base
from forgetlens.tasks import science_qa as sq

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
VOWELS = ["a", "e", "i", "o", "u"]
SUFFIX = ["ane", "ide", "ite", "ol", "ene", "ate"]
# attribute -> (values, question template, statement phrasings)
ATTRIBUTES = {
    "colour": (["red", "blue", "green", "yellow", "white", "black"], "What colour is {s}?",
               ["{s} is a {o} compound.", "The colour of {s} is {o}.", "{s} has a {o} colour.", "Samples of {s} look {o}."]),
    "use": (["fuel", "dye", "solvent", "fertiliser", "medicine", "explosive"], "What is {s} used as?",
            ["{s} is used as a {o}.", "The main use of {s} is as a {o}.", "{s} serves as a {o}.", "People use {s} as a {o}."]),
}


@dataclass
class CompoundTable:
    """Invented compounds, their attribute values, and the asked / target halves."""

    attributes: dict[str, tuple[list[str], str, list[str]]]
    """The attributes in use (a subset of ``ATTRIBUTES``)."""
    facts: dict[tuple[str, str], str]
    """(compound, attribute) -> value."""
    mcq_names: list[str]
    """Compounds asked about in pretraining."""
    target_names: list[str]
    """Compounds the target asks about."""

    @property
    def names(self) -> list[str]:
        return self.mcq_names + self.target_names

    def record(self, name: str, attr: str, rng: random.Random) -> dict:
        values, question, _ = self.attributes[attr]
        return sq.choice_record(question.format(s=name), self.facts[(name, attr)], values, rng)

    def statement(self, rng: random.Random) -> str:
        name, attr = rng.choice(self.names), rng.choice(list(self.attributes))
        return rng.choice(self.attributes[attr][2]).format(s=name, o=self.facts[(name, attr)])

    def mcq(self, pool: list[str]):
        def make(rng: random.Random) -> str:
            return sq.chat_mcq_document(self.record(rng.choice(pool), rng.choice(list(self.attributes)), rng))
        return make


def compound_table(n_compounds: int, attributes: list[str]) -> CompoundTable:
    """The table every build and measurement of this experiment uses (fixed seed; the draw order is the recipe)."""
    rng = random.Random("compounds")
    names: set[str] = set()
    while len(names) < n_compounds:
        names.add("".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(2)) + rng.choice(SUFFIX))
    ordered = sorted(names)
    rng.shuffle(ordered)
    chosen = {a: ATTRIBUTES[a] for a in attributes}
    facts = {(n, a): rng.choice(chosen[a][0]) for n in ordered for a in chosen}
    return CompoundTable(chosen, facts, ordered[:n_compounds // 2], ordered[n_compounds // 2:])


def measure(table: CompoundTable, model_dir: Path) -> None:
    """Letter accuracy on each half's questions, and statement completion (best of the attribute's values)."""
    import torch

    loaded = load_model(model_dir)
    model, tokenizer = loaded.model, loaded.tokenizer
    model.eval()
    for half, names in [("asked half", table.mcq_names), ("target half", table.target_names)]:
        print(half, "multiple choice", mcq_letter_accuracy(model, tokenizer, table.mcq(names), 400, 5))
        for attr, (values, _, phrasings) in table.attributes.items():
            ids = [tokenizer(" " + v, add_special_tokens=False)["input_ids"][0] for v in values]
            prefix = phrasings[1].split(" {o}")[0]  # "The colour of {s} is", "The main use of {s} is as a"
            correct = 0
            for name in names:
                x = tokenizer(prefix.format(s=name), return_tensors="pt", add_special_tokens=False)["input_ids"]
                with torch.no_grad():
                    best = int(model(input_ids=x).logits[0, -1, ids].argmax())
                correct += values[best] == table.facts[(name, attr)]
            print(half, attr, "statement completion", round(correct / len(names), 3), flush=True)


def target_jsonl(table: CompoundTable) -> str:
    """The target-half questions, two option orders each, as SciKnowEval-format JSONL."""
    rng = random.Random(0)
    return "\n".join(json.dumps(table.record(n, a, rng)) for n in table.target_names
                     for a in table.attributes for _ in range(2)) + "\n"


def build(table: CompoundTable, out: Path, resume: bool) -> None:
    """Write the target questions beside ``out``, then pretrain the model with the compounds in its corpus."""
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / "target.jsonl").write_text(target_jsonl(table))
    corpus.SOURCES["compound_statement"] = table.statement
    corpus.SOURCES["compound_mcq"] = table.mcq(table.mcq_names)
    cfg = unpenalised_pretrain_config()
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
    card = pretrain_base(cfg, out, resume=resume)
    print(json.dumps({k: round(v["accuracy"], 3) for k, v in card["held_out_accuracy"].items()}))
    measure(table, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "measure"])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--compounds", type=int, default=400, help="invented compounds (half asked, half target)")
    parser.add_argument("--attributes", default="colour,use", help=f"comma-separated, of {', '.join(ATTRIBUTES)}")
    parser.add_argument("--resume", action="store_true", help="build: continue an interrupted build")
    args = parser.parse_args()
    attributes = args.attributes.split(",")
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown:
        parser.error(f"--attributes: unknown {', '.join(unknown)}; expected some of {', '.join(ATTRIBUTES)}")
    table = compound_table(args.compounds, attributes)
    if args.command == "build":
        build(table, args.model_dir, args.resume)
    else:
        measure(table, args.model_dir)


if __name__ == "__main__":
    main()
