"""Stage 4 rebuilt with label smoothing or a head-sparsity penalty: does attribution agree better with exact
patching, and do circuits shrink?

    python experiments/stage4_variant.py OUT_DIR --start-from STAGE3_DIR [--label-smoothing 0.1]
        [--head-sparsity 0.01] [--steps 800] [--threads 2] [--start-after format|main]

Trains stage 4 of the recipe shipped until 2026-11-25 (``config.unpenalised_pretrain_config``: no head-sparsity
penalty; ``--steps`` changes its length) on a stage-3 model with cross-entropy label smoothing and/or an L1
penalty on the heads' residual contributions (``FormatStage.label_smoothing``, ``FormatStage.head_sparsity``),
then prints what the model card records: held-out accuracy per prior task and multiple-choice kind
(``compare_mcq`` is the default target's starting point), and per prior task the attribution/exact Spearman and
the smallest top-k circuit with faithfulness >= 0.8.  The stage-3 model is that model before stage 4 existed:
``git archive acf0495 src/forgetlens/models/embedded | tar -x -C DIR`` puts it in
``DIR/src/forgetlens/models/embedded``.  With neither option it reproduces the model shipped until 2026-11-25
(``git archive 75371a1 ...``).  ``--start-from`` that model itself runs stage 4 a second time on top of it (a
continued-training probe).  ``--start-after main`` with ``--start-from`` a stage-2 model (``git archive a91a9f4
...``, as above) trains stages 3 and 4, both with the options.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from forgetlens.circuits.validation import record_circuits
from forgetlens.config import unpenalised_pretrain_config
from forgetlens.models.card import summary_lines
from forgetlens.models.pretrain import pretrain_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--start-from", type=Path, required=True, help="the stage-3 (or stage-2) model directory")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--head-sparsity", type=float, default=0.0)
    parser.add_argument("--steps", type=int, default=None, help="stage-4 steps (default: the shipped 800)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: that recipe's 2)")
    parser.add_argument("--start-after", default="format", choices=["format", "main"],
                        help="the stage --start-from has completed")
    args = parser.parse_args()
    cfg = unpenalised_pretrain_config()
    cfg.threads = args.threads or cfg.threads
    cfg.compare_stage = dataclasses.replace(cfg.compare_stage, label_smoothing=args.label_smoothing,
                                            head_sparsity=args.head_sparsity,
                                            steps=args.steps or cfg.compare_stage.steps)
    if args.start_after == "main":
        cfg.format_stages = [dataclasses.replace(stage, label_smoothing=args.label_smoothing,
                                                 head_sparsity=args.head_sparsity) for stage in cfg.format_stages]
    card = pretrain_base(cfg, args.out, resume=True, start_from=args.start_from, start_after=args.start_after)
    for line in summary_lines(record_circuits(args.out, card)):
        print(line)


if __name__ == "__main__":
    main()
