"""Rebuild the embedded model with the science facts split into two pools, and write the target-pool questions.

    python experiments/split_facts_rebuild.py /tmp/rebuild/model          # ~35 min on 2 cores
    python experiments/split_facts_rebuild.py --score /tmp/rebuild/model /tmp/rebuild/sft/checkpoints/checkpoint-120
    forgetlens finetune --method sft --model /tmp/rebuild/model --data /tmp/rebuild/target.jsonl \
        --seed 100 --checkpoint-every 40 --out /tmp/rebuild/sft           # and --method rl

Why: on the shipped model, fine-tuning barely raises held-out target accuracy (README, "What the default
study found"). Its pretraining asks every science fact as a multiple-choice question, so the held-out
questions were already drilled, and no general skill is left for fine-tuning to improve.

This rebuild changes two things, both by replacing corpus sources. The model size, recipe shares, stages and
seed stay as in ``config.unpenalised_pretrain_config`` (the recipe shipped until 2026-11-25).

1. Every fact statement comes in one of four phrasings per relation.
2. Multiple-choice questions are drawn only from the "mcq" half of the facts, split by a hash of the element or
   quantity.

The "target" half is stated but never asked. Its questions, 8 option orders per fact, go to ``target.jsonl``
next to the model directory, for ``forgetlens finetune --data``. This is the condition under which Allen-Zhu &
Li (2023, "Physics of Language Models 3.1") saw question answering learnt on some facts carry over to others.

Measured on 2026-11-24 (one build, seed 0; 1,988 s of training):

- Prior tasks (held-out accuracy): induction 0.973, greater-than 0.962, fact recall 1.0, but **IOI 0.655**.
  IOI is far below the 95 % bar, so the model was not shipped.
- Multiple choice, best letter logit: mcq pool 0.66–0.72, target pool 0.12–0.13. The target pool is *below*
  chance, because the model prefers answers it was drilled on, which appear among the distractors.
- One fine-tuning seed (100), at the shipped learning rates, on 12 held-out target facts × 8 orders:
  - target accuracy: SFT 0.167 → 0.313 / 0.479 / 0.427 at steps 40 / 80 / 120; RL 0.167 → 0.240 / 0.292 / 0.344.
  - IOI accuracy retention at step 120: SFT 0.548, RL 0.984.

The adaptation was a shortcut (checked the same day): objects of the target pool only ever appear in
pretraining as wrong options, so the base is below chance and fine-tuning learns "pick the option from the
unasked pool". With distractors drawn from the target pool only, the base scores 0.25 and the step-120
checkpoints 0.29 (SFT) and 0.27 (RL) on all target questions, trained ones included. A rebuild with
distractors from the answer's own pool (branch ``experiment/pool-split``) stays at chance on the target and
does not adapt at any learning rate; the README ("What the default study found") has the numbers.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

from forgetlens.config import unpenalised_pretrain_config
from forgetlens.models import corpus
from forgetlens.models.pretrain import pretrain_base
from forgetlens.tasks import science_qa

PHRASINGS = {
    "symbol": ["The chemical symbol of {s} is {o}.", "{s} has the chemical symbol {o}.", "The symbol for {s} is {o}.",
               "In the periodic table, {s} is written as {o}."],
    "element": ["The element with the chemical symbol {s} is {o}.", "The symbol {s} stands for {o}.",
                "{s} is the chemical symbol of {o}.", "In the periodic table, {s} denotes {o}."],
    "unit": ["The SI unit of {s} is the {o}.", "{s} is measured in the SI unit called the {o}.",
             "The {o} is the SI unit of {s}.", "In SI units, {s} is expressed in the {o}."],
}


def fact_pool(relation: str, subject: str, obj: str) -> str:
    """"mcq" or "target", by a hash of the element (both directions of a symbol together) or quantity."""
    entity = obj if relation == "element" else subject
    return "mcq" if hashlib.sha256(entity.encode()).digest()[0] % 2 == 0 else "target"


FACTS = science_qa.science_facts()
MCQ_FACTS = [f for f in FACTS if fact_pool(*f) == "mcq"]
TARGET_FACTS = [f for f in FACTS if fact_pool(*f) == "target"]


def statement(rng: random.Random) -> str:
    relation, subject, obj = rng.choice(FACTS)
    return rng.choice(PHRASINGS[relation]).format(s=subject, o=obj)


def mcq_pool_question(rng: random.Random) -> str:
    relation, subject, obj = rng.choice(MCQ_FACTS)
    record = science_qa.mcq_record(relation, subject, obj, rng)
    return science_qa.chat_mcq_document(record)


def target_question(distractor_facts: list[tuple[str, str, str]]):
    """A corpus-style source of target-pool questions whose distractors come from ``distractor_facts``."""
    def make(rng: random.Random) -> str:
        relation, subject, obj = rng.choice(TARGET_FACTS)
        candidates = [o for rel, _, o in distractor_facts if rel == relation]
        question = science_qa.RELATIONS[relation][1].format(s=subject)
        return science_qa.chat_mcq_document(science_qa.choice_record(question, obj, candidates, rng))
    return make


def score(paths: list[str]) -> None:
    """The shortcut check: target-pool letter accuracy with distractors from all facts vs the target pool only."""
    from forgetlens.models.loading import load_model
    from forgetlens.models.pretrain import mcq_letter_accuracy

    for path in paths:
        loaded = load_model(path)
        loaded.model.eval()
        accuracy = {name: mcq_letter_accuracy(loaded.model, loaded.tokenizer, target_question(facts), 400, 5)
                    for name, facts in [("all facts", FACTS), ("target pool", TARGET_FACTS)]}
        print(path, "distractors from", accuracy, flush=True)


def main() -> None:
    if sys.argv[1] == "--score":
        return score(sys.argv[2:])
    out = Path(sys.argv[1])
    corpus.SOURCES["science_statement"] = statement
    corpus.SOURCES["science_mcq"] = mcq_pool_question
    print(f"{len(MCQ_FACTS)} mcq-pool facts, {len(TARGET_FACTS)} target-pool facts", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    lines = [json.dumps(science_qa.mcq_record(rel, s, o, rng)) for rel, s, o in TARGET_FACTS for _ in range(8)]
    (out.parent / "target.jsonl").write_text("\n".join(lines) + "\n")
    card = pretrain_base(unpenalised_pretrain_config(), out, resume="--resume" in sys.argv)
    print(json.dumps({k: v["accuracy"] for k, v in card["held_out_accuracy"].items()}, indent=1))


if __name__ == "__main__":
    main()
