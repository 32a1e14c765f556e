"""The model card's circuit validation on fresh prompts: does a model's card hold beyond the prompts it was
measured on?

    python experiments/validate_circuits.py MODEL_DIR [--seed 1] [--threads 1]

Runs ``embedded_build.validation.validate_task`` for every default prior task, as the card does (512 discovery and 512
evaluation prompts), but with the prompts drawn from ``--seed`` (the card uses seed 0), and prints the
attribution/exact Spearman with its interval and the smallest top-k circuit with faithfulness >= 0.8.  The model
and its card are left as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from forgetlens.embedded_build.card import circuit_line
from forgetlens.embedded_build.validation import validate_task
from forgetlens.errors import ForgetlensError
from forgetlens.models.loading import load_model
from forgetlens.tasks.registry import parse_task_list


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        loaded = load_model(args.model)
    except ForgetlensError as error:
        raise SystemExit(f"error: {error}") from None
    for task in parse_task_list(None):
        print(circuit_line(task.name, validate_task(loaded.model, loaded.tokenizer, task, seed=args.seed)), flush=True)


if __name__ == "__main__":
    main()
