"""Where the forgetting lives in a SmolLM2 checkpoint that lost skills on every metric.

    python experiments/lost_skills_anatomy.py --out runs/lost-skills [--lr 3e-4] [--step 64]

Trains SFT on SmolLM2-135M-Instruct as a new user would (``forgetlens finetune --method sft --model smollm2-135m
--synthetic-target compare-short --max-records 240 --steps 96 --checkpoint-every 32 --prompts-per-step 4
--lr 3e-4``, seed 0) but with a lighter behaviour evaluation (32 prior prompts per task, one KL sample of 24
prompts; the weights do not depend on it), then audits checkpoint ``--step`` against the base with the anatomy
(``forgetlens audit --anatomy``) on every real-model prior task, and prints where each task's change lives.
Writes ``OUT/run/`` (the run) and ``OUT/audit.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from forgetlens.artefacts import write_json
from forgetlens.config.options import AuditConfig, FinetuneConfig
from forgetlens.pipeline.audit import audit
from forgetlens.pipeline.finetune import finetune
from forgetlens.report.anatomy import anatomy_lines

TASKS = ("fact_recall", "ioi", "greater_than_year", "induction")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--step", type=int, default=64)
    parser.add_argument("--n-examples", type=int, default=64, help="prompts per split of each task's audit")
    args = parser.parse_args()
    cfg = FinetuneConfig(
        method="sft",
        model="smollm2-135m",
        synthetic_target="compare-short",
        max_records=240,
        steps=96,
        checkpoint_every=32,
        prompts_per_step=4,
        lr_sft=args.lr,
        seed=0,
        prior_eval_examples=32,
        kl_samples=1,
        kl_prompts=24,
        kl_max_new_tokens=24,
        threads=1,
    )
    run = args.out / "run"
    rows = finetune(cfg, run, resume=run.exists())
    for r in rows:
        prior = ", ".join(f"{t} {v['accuracy']:.3f}" for t, v in r["prior"].items())
        print(f"step {r['step']}: target {r['target_accuracy']:.3f}; prior top-1 {prior}")
    checkpoint = run / "checkpoints" / f"checkpoint-{args.step}"
    result = audit(
        AuditConfig(
            base="smollm2-135m",
            tuned=[f"sft@{args.step}={checkpoint}"],
            tasks=",".join(TASKS),
            n_boot=1000,
            n_examples=args.n_examples,
            top_m=4,
            anatomy=True,
        )
    )
    result["finetune_config"] = dataclasses.asdict(cfg)
    write_json(args.out / "audit.json", result)
    for task, r in result["tasks"].items():
        for label, a in r["anatomy"].items():
            print("\n".join(anatomy_lines(task, label, a)))
    print(f"-> {args.out / 'audit.json'}")


if __name__ == "__main__":
    main()
