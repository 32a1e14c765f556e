"""Target questions in a wording the embedded model's pretraining never used, split by fact.

    python experiments/reworded_questions.py /tmp/reworded.jsonl
    forgetlens finetune --method sft --data /tmp/reworded.jsonl --seed 100 --lr 3e-4 --checkpoint-every 40 \
        --out /tmp/reworded-sft

Every fact of the built-in table, 8 option orders each, distractors drawn as the pretraining corpus draws them
(from the relation's other objects). ``finetune`` splits by question text, so held-out facts are never trained.
Measured on 2026-11-24 on the shipped model (seed 100, 120 steps): base 0.208; SFT 0.255 at lr 1e-4 and 0.315 at
3e-4 (docs/results/archive/targets-history.md).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from forgetlens.targets import science_qa

REWORDED = {
    "symbol": "Which of these is the symbol used for {s} in chemistry?",
    "element": "The symbol {s} belongs to which element?",
    "unit": "Which of these units is used to measure {s} in SI?",
}


def main() -> None:
    rng = random.Random(0)
    records = []
    for relation, subject, obj in science_qa.science_facts():
        for _ in range(8):
            record = science_qa.mcq_record(relation, subject, obj, rng)
            record["question"] = REWORDED[relation].format(s=subject)
            records.append(record)
    Path(sys.argv[1]).write_text("\n".join(json.dumps(r) for r in records) + "\n")
    print(f"{len(records)} records -> {sys.argv[1]}")


if __name__ == "__main__":
    main()
