"""LoRA against full fine-tuning: seconds per step and peak memory of an SFT and an RL step, side by side.

    python bench/lora.py [--models smollm2-135m,qwen2.5-coder-0.5b] [--ranks 8,32] [--steps 3] [--threads 1]

Each (model, method, rank) trains ``--steps`` steps in a process of its own (rank 0: full fine-tuning), at the
SmolLM2 frontier's shapes (``configs/smollm2-135m-frontier.yaml``: 8 prompts a step; RL groups of 8, 12 tokens,
temperature 0.7), and reports the mean time of the steps after the first and the process's peak resident memory
(``ru_maxrss``: weights, gradients, optimizer state, activations). LoRA goes on every linear layer (PEFT's
``all-linear``), ``lora_alpha = 2 r``; ratios are against the same model and method fully fine-tuned.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def one(model: str, method: str, rank: int, steps: int, threads: int) -> dict:
    """Train ``steps`` steps of one configuration in this process; its step times and peak memory."""
    import dataclasses
    import resource
    import tempfile
    from pathlib import Path

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from forgetlens.config.loading import load_frontier_config
    from forgetlens.models.loading import load_model
    from forgetlens.pipeline.frontier import frontier_runs
    from forgetlens.training.data import conversational_rows, target_splits, training_schedule
    from forgetlens.training.trainers import build_rl_trainer, build_sft_trainer

    torch.set_num_threads(threads)
    runs = frontier_runs(load_frontier_config("configs/smollm2-135m-frontier.yaml"))
    cfg = next(c for c in runs.values() if c.method == method)
    cfg = dataclasses.replace(cfg, model=model, steps=steps, checkpoint_every=10 * steps, lora_rank=rank)
    loaded = load_model(model)
    train, _ = target_splits(cfg)
    rows = conversational_rows(training_schedule(train, cfg), with_completion=method == "sft")
    loaded.model.train()
    times: list[float] = []

    class Steps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.start)

    build = build_rl_trainer if method == "rl" else build_sft_trainer
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build(loaded.model, loaded.tokenizer, Dataset.from_list(rows), cfg, Path(tmp), callbacks=[Steps()])
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        trainer.train()
    return {
        "seconds_per_step": sum(times[1:]) / max(len(times) - 1, 1),
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "trainable": trainable,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2-135m")
    parser.add_argument("--ranks", default="8,32")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "METHOD", "RANK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        model, method, rank = args.one
        print(json.dumps(one(model, method, int(rank), args.steps, args.threads)))
        return
    ranks = [0] + [int(r) for r in args.ranks.split(",")]
    print(f"{args.steps} steps each ({args.steps - 1} timed), {args.threads} thread(s), the SmolLM2 frontier's shapes")
    print(f"{'model':<20}{'method':<7}{'LoRA rank':>10}{'trainable':>13}", end="")
    print(f"{'s / step':>10}{'x full':>8}{'peak GiB':>10}{'x full':>8}")
    for model in args.models.split(","):
        for method in ("sft", "rl"):
            full = None
            for rank in ranks:
                cmd = [sys.executable, __file__, "--one", model, method, str(rank), "--steps", str(args.steps)]
                cmd += ["--threads", str(args.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                r = json.loads(out)
                full = full or r
                print(
                    f"{model:<20}{method:<7}{rank or 'full':>10}{r['trainable']:>13,}{r['seconds_per_step']:>10.2f}"
                    f"{r['seconds_per_step'] / full['seconds_per_step']:>8.2f}{r['peak_gib']:>10.2f}"
                    f"{r['peak_gib'] / full['peak_gib']:>8.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
