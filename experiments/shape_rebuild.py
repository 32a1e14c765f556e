"""The embedded model's recipe in another shape (more heads, or more layers) or with a head-sparsity penalty in
every stage.  Do circuits fit in a quarter of the heads, and does the model keep its prior tasks?

    python experiments/shape_rebuild.py OUT_DIR [--n-layers 4] [--n-heads 8] [--n-kv-heads 4] [--head-sparsity 0]
        [--format-head-sparsity λ1,λ2,λ3] [--compare-head-sparsity λ4] [--threads 2] [--seed 0]

Builds the shipped recipe (``PretrainConfig`` defaults, seed ``--seed``) with only the shape changed (d_model
stays 128, so d_head = 128 / n_heads) and ``--head-sparsity`` set for stages 1-2 and every later sub-stage
(``PretrainConfig.head_sparsity``, ``FormatStage.head_sparsity``; ``--format-head-sparsity`` overrides it per
stage-3 sub-stage, ``--compare-head-sparsity`` for stage 4), then prints what the model card records: held-out
accuracy per prior task and multiple-choice kind, and per prior task the attribution/exact Spearman and the
smallest top-k circuit with faithfulness >= 0.8 (``circuits.validation.validate_task``, the same prompts as the
card).  Resumes an interrupted build in OUT_DIR; on a finished build it only validates again, so ``python
experiments/shape_rebuild.py src/forgetlens/models/embedded`` regenerates the shipped card's circuit section.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from forgetlens.circuits.validation import record_circuits
from forgetlens.config import PretrainConfig
from forgetlens.models.card import summary_lines
from forgetlens.models.pretrain import STATE_FILE, pretrain_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=8)
    parser.add_argument("--n-kv-heads", type=int, default=4)
    parser.add_argument("--head-sparsity", type=float, default=0.0)
    parser.add_argument("--compare-head-sparsity", type=float, default=None,
                        help="stage 4's penalty (default: --head-sparsity)")
    parser.add_argument("--format-head-sparsity", default=None,
                        help="stage 3's penalty per sub-stage, comma-separated (default: --head-sparsity for each)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the build's seed (PretrainConfig.seed)")
    args = parser.parse_args()
    card_path = args.out / "card.json"
    if not card_path.exists() or (args.out / STATE_FILE).exists():
        cfg = PretrainConfig(seed=args.seed, n_layers=args.n_layers, n_heads=args.n_heads,
                             n_kv_heads=args.n_kv_heads, head_sparsity=args.head_sparsity, threads=args.threads)
        format_lambdas = [args.head_sparsity] * len(cfg.format_stages)
        if args.format_head_sparsity is not None:
            try:
                format_lambdas = [float(x) for x in args.format_head_sparsity.split(",")]
            except ValueError:
                format_lambdas = []
            if len(format_lambdas) != len(cfg.format_stages):
                parser.error(f"--format-head-sparsity: expected {len(cfg.format_stages)} comma-separated numbers "
                             f"(one per stage-3 sub-stage), got {args.format_head_sparsity!r}")
        cfg.format_stages = [dataclasses.replace(stage, head_sparsity=lam)
                             for stage, lam in zip(cfg.format_stages, format_lambdas)]
        compare_lambda = args.head_sparsity if args.compare_head_sparsity is None else args.compare_head_sparsity
        cfg.compare_stage = dataclasses.replace(cfg.compare_stage, head_sparsity=compare_lambda)
        card = pretrain_base(cfg, args.out, resume=True)
    else:
        card = json.loads(card_path.read_text())
    for line in summary_lines(record_circuits(args.out, card)):
        print(line)


if __name__ == "__main__":
    main()
