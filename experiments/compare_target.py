"""A computed target partly learned in pretraining: which of four quantities is the largest / smallest.

    python experiments/compare_target.py data OUT.jsonl
    python experiments/compare_target.py substage OUT_DIR [--steps 600] [--share 0.1] [--lr 1e-3] [--every 100]
    forgetlens finetune --method sft --model OUT_DIR/step-N --data OUT.jsonl --seed 100 --out RUN

Every (quantity, set of four distinct digits) pair is assigned once, by a fixed seed, to the "pretrain" half or
the "target" half.  ``substage`` continues the shipped model on the final pretraining sub-stage's mixture plus a
``--share`` of comparison questions from the pretrain half only, saving the model every ``--every`` steps and
printing its letter accuracy on target-half questions and the prior tasks.  ``data`` writes one
SciKnowEval-format record per target-half pair, so ``finetune``'s split by question text holds out pairs that
neither pretraining nor fine-tuning ever asked.

Measured (2026-11-24; README, "What the default study found"): ``substage --share 0.5 --steps 800 --every 200``
took target-half letter accuracy from 0.217 to 0.357 / 0.407 / 0.497 at steps 400 / 600 / 800 (``--share 0.1
--every 100``: at most 0.300 within 600 steps).  From ``step-800`` (base 0.532 on ``finetune``'s 126 held-out
questions, seed 100, 120 steps): SFT 0.579 / 0.563 / 0.468 and RL 0.556 / 0.476 / 0.262 at lr 1e-4 / 3e-4 / 1e-3.
Four times that budget (``--steps 480 --checkpoint-every 120``, seed 100), steps 120 / 240 / 360 / 480:
SFT at lr 1e-4 0.579 / 0.635 / 0.611 / 0.698 (IOI retention 0.948, greater-than 0.96 at 480), SFT at 3e-4
0.563 / 0.635 / 0.667 / 0.770 (IOI 0.817, greater-than 0.71), RL at 1e-4 0.556 / 0.532 / 0.603 / 0.587
(forward KL 2.62, SFT's 0.92 at 1e-4).  The three-seed study on this target is ``configs/embedded-compare-study.yaml``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import random
from pathlib import Path

from forgetlens.tasks import science_qa

from skill_targets import QUANTITIES, compare_record, continued_pretraining  # experiments/ is on sys.path


@functools.cache
def halves() -> tuple[list[tuple], list[tuple]]:
    """(pretrain pairs, target pairs): every (quantity, unit, digit set) in exactly one half."""
    pairs = [(q, u, digits) for q, u in QUANTITIES for digits in itertools.combinations(range(10), 4)]
    random.Random("compare-halves").shuffle(pairs)
    return pairs[: len(pairs) // 2], pairs[len(pairs) // 2:]


def target_records(seed: int = 0) -> list[dict]:
    rng = random.Random(f"compare-target:{seed}")
    return [compare_record(q, u, d, rng) for q, u, d in halves()[1]]


def pretrain_document(rng: random.Random) -> str:
    return science_qa.chat_mcq_document(compare_record(*rng.choice(halves()[0]), rng))


def substage(out: Path, steps: int, share: float, lr: float, every: int) -> None:
    """Continue the shipped model with comparison questions mixed in; save and score every ``every`` steps."""
    from forgetlens.models.pretrain import evaluate_base, mcq_letter_accuracy

    model, tokenizer, train_step = continued_pretraining("compare", pretrain_document, share, lr, "compare-substage")
    records = target_records()

    def target_document(r: random.Random) -> str:
        return science_qa.chat_mcq_document(r.choice(records))

    for step in range(steps + 1):
        if step % every == 0:
            model.eval()
            accuracy = mcq_letter_accuracy(model, tokenizer, target_document, 300, 3)
            prior = {k: round(v["accuracy"], 3) for k, v in evaluate_base(model, tokenizer, 100, 10_000).items()
                     if "/" not in k}
            print(f"step {step}: target compare {accuracy:.3f} {prior}", flush=True)
            model.save_pretrained(str(out / f"step-{step}"))
            tokenizer.save_pretrained(str(out / f"step-{step}"))
            model.train()
        if step == steps:
            break
        train_step(step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("data").add_argument("out", type=Path)
    stage = sub.add_parser("substage")
    stage.add_argument("out", type=Path)
    stage.add_argument("--steps", type=int, default=600)
    stage.add_argument("--share", type=float, default=0.1)
    stage.add_argument("--lr", type=float, default=1e-3)
    stage.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    if args.command == "substage":
        substage(args.out, args.steps, args.share, args.lr, args.every)
        return
    rows = target_records()
    args.out.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    print(f"{len(rows)} records -> {args.out}")


if __name__ == "__main__":
    main()
