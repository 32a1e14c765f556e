"""Cost of the behaviour evaluation of one checkpoint, at FinetuneConfig's default sizes and at the sizes
``forgetlens finetune`` uses on a real model (``config.REAL_MODEL_EVALUATION``), side by side.

    python bench/evaluation.py [--model smollm2-135m] [--threads 1]

The checkpoint measured is the base model itself (step 0, the row every run measures first), so no weights are
loaded beyond the base: "setup" is loading the base and sampling its completions for the forward KL (once per
run), "per checkpoint" is target accuracy, prior tasks and the KL against those samples.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from forgetlens.config.options import REAL_MODEL_EVALUATION, FinetuneConfig, sized_for_real_model
from forgetlens.models.loading import load_model
from forgetlens.pipeline.evaluate import behaviour_probe
from forgetlens.training.data import target_splits


def timed(cfg: FinetuneConfig) -> tuple[float, float, dict]:
    """(setup seconds, seconds per checkpoint, the row) of ``cfg``'s evaluation."""
    start = time.perf_counter()
    _, eval_records = target_splits(cfg)
    measure = behaviour_probe(cfg, eval_records)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    row = measure(0, Path("unused"))
    return setup, time.perf_counter() - start, row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    load_model(args.model)  # the one-time GGUF conversion, outside the timings
    default = FinetuneConfig(model=args.model, threads=args.threads)
    rows = [("defaults", default), ("real-model sizes", sized_for_real_model(default))]
    print(f"{args.model}, {args.threads} thread(s); real-model sizes: {REAL_MODEL_EVALUATION}")
    print(f"{'sizes':<18}{'prior prompts':>14}{'KL samples':>11}{'setup s':>9}{'per checkpoint s':>18}")
    results = []
    for name, cfg in rows:
        setup, per, row = timed(cfg)
        results.append(per)
        n_kl = (cfg.kl_prompts or len(target_splits(cfg)[1])) * cfg.kl_samples
        print(f"{name:<18}{cfg.prior_eval_examples * len(row['prior']):>14}{n_kl:>11}{setup:>9.1f}{per:>18.1f}")
    print(f"ratio (defaults / real-model sizes), per checkpoint: {results[0] / results[1]:.1f}x")


if __name__ == "__main__":
    main()
