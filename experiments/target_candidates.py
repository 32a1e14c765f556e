"""Which fine-tuning target can a real model show learning on?  Base-model accuracy of each candidate target.

    python experiments/target_candidates.py [--model smollm2-135m] [--n 64] [--data ../shared/data/...]

For each candidate (the built-in comparison questions as multiple choice and as short answers, the built-in
science facts, and each SciKnowEval chemistry L3 multiple-choice file), on ``--n`` held-out questions rendered
with the model's chat template:

- ``letter``: accuracy of the option letter with the largest logit at the first assistant token (A-D only);
- ``greedy``: accuracy of the greedy reply scored as the RL reward scores it (``targets/rewards.py``);
- ``top letter share``: the share of questions whose letter-logit answer is the most frequent letter
  (letter bias: 0.25 when the model spreads its answers, 1.0 when it always says the same letter).

Prints a markdown table; chance is 0.25 for multiple choice.
"""

from __future__ import annotations

import argparse
import collections
import random
from pathlib import Path

import torch

from forgetlens.config.options import FinetuneConfig
from forgetlens.measure.behaviour import chat_prompts, generate, letter_choices, target_accuracy
from forgetlens.models.loading import configure_threads, load_model
from forgetlens.training.data import target_splits


def candidates(n: int, data: list[Path]) -> dict[str, list[dict]]:
    """Candidate name -> up to ``n`` held-out records (the evaluation split of seed 0)."""
    out = {}
    for name, cfg in (
        ("compare (multiple choice)", FinetuneConfig(synthetic_target="compare")),
        ("compare (short answer)", FinetuneConfig(synthetic_target="compare-short")),
        ("science facts (multiple choice)", FinetuneConfig(synthetic_target="facts", variants_per_question=1)),
    ):
        out[name] = target_splits(cfg)[1][:n]
    for path in data:
        records = target_splits(FinetuneConfig(data=str(path), max_records=4 * n))[1]
        out[f"{path.stem} (multiple choice)"] = random.Random(0).sample(records, min(n, len(records)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument(
        "--data",
        type=Path,
        nargs="*",
        default=sorted(
            p for p in Path("../shared/data/sciknoweval-chemistry-L3").glob("*.jsonl") if "balancing" not in p.name
        ),
    )
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    loaded = load_model(args.model)
    configure_threads(loaded.model, 1)
    model, tokenizer = loaded.model, loaded.tokenizer
    print(f"model {args.model}; {args.n} held-out questions per candidate; chance 0.25 for multiple choice\n")
    print("| candidate | questions | letter | greedy | top letter share | a greedy reply |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, records in candidates(args.n, args.data).items():
        greedy, _ = target_accuracy(model, tokenizer, records, args.max_new_tokens)
        mcq = [r for r in records if r.get("type") != "filling"]
        if mcq:
            picked = letter_choices(model, tokenizer, mcq)
            letter = sum(p == r["answerKey"] for p, r in zip(picked, mcq)) / len(mcq)
            top = collections.Counter(picked).most_common(1)[0][1] / len(mcq)
            letter_cell, top_cell = f"{letter:.3f}", f"{top:.2f}"
        else:
            letter_cell = top_cell = "-"
        reply = tokenizer.decode(
            generate(model, tokenizer, chat_prompts(tokenizer, records[:1]), args.max_new_tokens)[0],
            skip_special_tokens=True,
        )
        print(
            f"| {name} | {len(records)} | {letter_cell} | {greedy:.3f} | {top_cell} | {reply.strip()[:40]!r} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
