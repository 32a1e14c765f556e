"""The embedded model's recipe in another shape (more heads, or more layers), with another head-sparsity penalty,
seed or corpus source.  Do circuits fit in a quarter of the heads, and does the model keep its prior tasks?

    python experiments/shape_rebuild.py OUT_DIR [--n-layers 4] [--n-heads 8] [--n-kv-heads 4] [--head-sparsity λ]
        [--format-head-sparsity λ1,λ2,λ3] [--compare-head-sparsity λ4] [--threads N] [--seed S]
        [--replace-source OLD=NEW ...]

Builds the shipped recipe (``PretrainConfig`` defaults; every option left out keeps its default) with the shape
changed (d_model stays 128, so d_head = 128 / n_heads), ``--head-sparsity`` set for stages 1-2 and every later
sub-stage (``PretrainConfig.head_sparsity``, ``FormatStage.head_sparsity``; ``--format-head-sparsity`` overrides
it per stage-3 sub-stage, ``--compare-head-sparsity`` for stage 4) and each ``--replace-source`` corpus source
swapped for another in every stage's mixture (``models/corpus.py``), then prints what the model card records: held-out
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
from forgetlens.models.corpus import SOURCES
from forgetlens.models.pretrain import STATE_FILE, pretrain_base


def replace_source(recipe: dict[str, float], old: str, new: str) -> dict[str, float]:
    """``recipe`` with source ``old`` renamed ``new`` (same share, same place)."""
    return {new if name == old else name: share for name, share in recipe.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=8)
    parser.add_argument("--n-kv-heads", type=int, default=4)
    parser.add_argument("--head-sparsity", type=float, default=None,
                        help="stages 1-2 and every later stage's penalty (default: PretrainConfig's)")
    parser.add_argument("--compare-head-sparsity", type=float, default=None,
                        help="stage 4's penalty (default: --head-sparsity, else PretrainConfig's)")
    parser.add_argument("--format-head-sparsity", default=None,
                        help="stage 3's penalty per sub-stage, comma-separated "
                             "(default: --head-sparsity, else PretrainConfig's)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PretrainConfig's)")
    parser.add_argument("--seed", type=int, default=None, help="the build's seed (default: PretrainConfig's)")
    parser.add_argument("--replace-source", action="append", default=[], metavar="OLD=NEW",
                        help="use corpus source NEW wherever the recipe draws OLD (repeatable)")
    args = parser.parse_args()
    card_path = args.out / "card.json"
    if not card_path.exists() or (args.out / STATE_FILE).exists():
        cfg = PretrainConfig(n_layers=args.n_layers, n_heads=args.n_heads, n_kv_heads=args.n_kv_heads)
        cfg.seed = cfg.seed if args.seed is None else args.seed
        cfg.threads = cfg.threads if args.threads is None else args.threads
        if args.head_sparsity is not None:
            cfg.head_sparsity = args.head_sparsity
            cfg.compare_stage = dataclasses.replace(cfg.compare_stage, head_sparsity=args.head_sparsity)
        format_lambdas = [cfg.head_sparsity] * len(cfg.format_stages)
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
        if args.compare_head_sparsity is not None:
            cfg.compare_stage = dataclasses.replace(cfg.compare_stage, head_sparsity=args.compare_head_sparsity)
        for swap in args.replace_source:
            old, sep, new = swap.partition("=")
            recipes = [cfg.curriculum_recipe, cfg.recipe, cfg.compare_stage.recipe]
            recipes += [stage.recipe for stage in cfg.format_stages]
            if not sep or new not in SOURCES or not any(old in recipe for recipe in recipes):
                parser.error(f"--replace-source: expected OLD=NEW with OLD a source of the recipe and NEW one of "
                             f"{', '.join(SOURCES)}, got {swap!r}")
            cfg.curriculum_recipe = replace_source(cfg.curriculum_recipe, old, new)
            cfg.recipe = replace_source(cfg.recipe, old, new)
            cfg.format_stages = [dataclasses.replace(stage, recipe=replace_source(stage.recipe, old, new))
                                 for stage in cfg.format_stages]
            cfg.compare_stage = dataclasses.replace(cfg.compare_stage,
                                                    recipe=replace_source(cfg.compare_stage.recipe, old, new))
        card = pretrain_base(cfg, args.out, resume=True)
    else:
        card = json.loads(card_path.read_text())
    for line in summary_lines(record_circuits(args.out, card)):
        print(line)


if __name__ == "__main__":
    main()
