"""Wall time of auditing one tuned model on all prior tasks, split into discovery and metrics.

    python bench/audit.py [--n-examples 128] [--n-boot 1000] [--steps 20]

Builds a tuned model with a short default SFT run (not timed), then times `audit` of that one model
against the embedded base on every prior task and prints the share spent on base circuits (scoring
heads, faithfulness curve, measuring the base model against them) vs measuring the tuned model
(attribution, head-local and total CMAP, drift, faithfulness, bootstrap).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from forgetlens.config.options import AuditConfig, FinetuneConfig
from forgetlens.pipeline.audit import audit
from forgetlens.pipeline.finetune import finetune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-examples", type=int, default=128)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = FinetuneConfig(
            method="sft", steps=args.steps, checkpoint_every=args.steps, prior_eval_examples=16, kl_samples=1
        )
        finetune(cfg, Path(tmp) / "run", log=lambda *a: None)
        ckpt = Path(tmp) / "run" / "checkpoints" / f"checkpoint-{args.steps}"
        result = audit(
            AuditConfig(base="embedded", tuned=[f"sft={ckpt}"], n_boot=args.n_boot, n_examples=args.n_examples)
        )
    t = result["timings"]
    print(f"audit of one tuned model, 4 tasks, {args.n_examples} prompts per split, {args.n_boot} bootstrap resamples")
    print(f"{'stage':<12}{'seconds':>10}{'share':>9}")
    for key in ("discovery", "metrics"):
        print(f"{key:<12}{t[key]:>10.1f}{t[key] / t['total']:>9.1%}")
    print(f"{'total':<12}{t['total']:>10.1f}")


if __name__ == "__main__":
    main()
