"""The model card's circuit validation on fresh prompts: does a model's card hold beyond the prompts it was
measured on?

    python experiments/validate_circuits.py MODEL_DIR [--seed 1] [--threads 1]

Runs ``circuits.validation.validate_task`` for every default prior task, as the card does (512 discovery and 512
evaluation prompts), but with the prompts drawn from ``--seed`` (the card uses seed 0), and prints the
attribution/exact Spearman with its interval and the smallest top-k circuit with faithfulness >= 0.8.  The model
and its card are left as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from forgetlens.circuits.validation import validate_task
from forgetlens.models.loading import load_model
from forgetlens.tasks.registry import parse_task_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    for task in parse_task_list(None):
        result = validate_task(loaded.model, loaded.tokenizer, task, seed=args.seed)
        low, high = result["spearman_ci"]
        print(f"{task.name}: Spearman {result['spearman_attribution_vs_exact']:.3f} [{low:.3f}, {high:.3f}], "
              f"circuit {result['circuit_k']} heads ({result['circuit_fraction']:.0%}), "
              f"faithfulness {result['circuit_faithfulness']:.3f}", flush=True)


if __name__ == "__main__":
    main()
