"""Where an RL (Dr.GRPO) step of the default run spends its time: backward, policy forward, generation.

    python bench/rl_step.py [--steps 15] [--config STUDY.yaml] [--trl-scoring]

Trains an RL run for ``--steps`` steps under cProfile (one torch thread, as the study's workers use): by default
the default RL configuration, with ``--config`` the RL run of that study (seed 0). Prints, per step, the
cumulative time of TRL's generation, of the policy's scoring pass in the loss, of autograd's backward and of
the optimizer, each also as a share of the whole step. ``--trl-scoring`` turns ``rl.shared_prompt_scoring`` off.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

from forgetlens.config.loading import load_study_config
from forgetlens.config.options import FinetuneConfig
from forgetlens.models.loading import configure_threads, load_model
from forgetlens.pipeline.study import run_configs
from forgetlens.training.data import conversational_rows, target_splits, training_schedule
from forgetlens.training.trainers import build_rl_trainer

PARTS = {  # label -> (file suffix or suffixes, function name) in the profile
    "generation": ("grpo_trainer.py", "_generate"),
    "scoring (loss forward)": (("grpo_trainer.py", "shared_prompt.py"), "_get_per_token_logps_and_entropies"),
    "backward": ("accelerator.py", "backward"),
    "optimizer step": (("adam.py", "adamw.py"), "step"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--config", help="a study YAML: profile its RL run (seed 0)")
    parser.add_argument("--trl-scoring", action="store_true", help="TRL's scoring of G full copies")
    args = parser.parse_args()
    from datasets import Dataset

    if args.config:
        study = load_study_config(args.config)
        cfg = run_configs(study)[f"rl-s{study.seeds[0]}"]
        cfg.steps, cfg.checkpoint_every = args.steps, 10 * args.steps
    else:
        cfg = FinetuneConfig(method="rl", steps=args.steps, checkpoint_every=10 * args.steps)
    cfg.rl.shared_prompt_scoring = not args.trl_scoring
    loaded = load_model(cfg.model)
    configure_threads(loaded.model, cfg.threads)
    train, _ = target_splits(cfg)
    dataset = Dataset.from_list(conversational_rows(training_schedule(train, cfg), with_completion=False))
    loaded.model.train()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_rl_trainer(loaded.model, loaded.tokenizer, dataset, cfg, Path(tmp))
        profile = cProfile.Profile()
        profile.enable()
        trainer.train()
        profile.disable()
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    total = max(v[3] for (f, _, name), v in stats.items() if name == "train" and f.endswith("trainer.py"))
    scoring = "TRL's scoring" if args.trl_scoring else "shared-prompt scoring"
    print(
        f"RL ({args.config or 'default'}, {scoring}), {args.steps} steps, "
        f"{cfg.prompts_per_step} prompts x {cfg.rl.num_generations} completions per step"
    )
    print(f"{'part':<24}{'s / step':>10}{'share':>8}")
    for label, (suffix, fn) in PARTS.items():
        cum = max((v[3] for (f, _, name), v in stats.items() if name == fn and f.endswith(suffix)), default=0.0)
        print(f"{label:<24}{cum / args.steps:>10.3f}{cum / total:>8.1%}")
    print(f"{'whole step':<24}{total / args.steps:>10.3f}")


if __name__ == "__main__":
    main()
