"""Is a task's circuit one circuit, or the union of smaller ones?  The smallest faithful circuit per prompt
configuration (template and corrupted position).

    python experiments/circuits_by_configuration.py [--task greater_than] [--model embedded] [--n 256] [--seed 0]

Groups the discovery and evaluation prompts (``circuits.discover.task_splits``) by first token, length and the
positions where the clean and corrupted prompts differ, then for each group with at least 8 prompts in both
splits ranks heads by attribution on its discovery prompts and prints the smallest top-k reaching faithfulness
0.8 on its evaluation prompts (counterfactual ablation, as the model card).  A task whose groups need few heads
each but different ones has a large circuit because it is a union.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch

from forgetlens.circuits.attribution import attribution_scores
from forgetlens.circuits.circuit import choose_k, default_ks, faithfulness_curve, rank_heads
from forgetlens.circuits.discover import task_splits
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import load_model
from forgetlens.tasks import get_task
from forgetlens.tasks.base import TaskBatch


def configurations(batch: TaskBatch, tokenizer) -> dict[tuple, list[int]]:
    """(first token, prompt length, corrupted positions) -> row indices."""
    groups = defaultdict(list)
    for i in range(len(batch)):
        length = int(batch.answer_pos[i]) + 1
        changed = (batch.clean_ids[i, :length] != batch.corrupted_ids[i, :length]).nonzero().flatten().tolist()
        groups[(tokenizer.decode(batch.clean_ids[i, :1]), length, tuple(changed))].append(i)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="greater_than")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--n", type=int, default=256, help="prompts per split")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_model(args.model)
    layout = HeadLayout.of(loaded.model)
    discovery, evaluation = task_splits(loaded.tokenizer, get_task(args.task), args.n, args.seed)
    found, held = configurations(discovery, loaded.tokenizer), configurations(evaluation, loaded.tokenizer)
    print("first token, length, corrupted positions | prompts (discovery, evaluation) | k | circuit")
    for key in sorted(found):
        if len(found[key]) < 8 or len(held.get(key, [])) < 8:
            continue
        order = rank_heads(
            attribution_scores(loaded.model, layout, discovery.subset(found[key]), metric="logit_diff").mean(0)
        )
        curve, _ = faithfulness_curve(
            loaded.model, layout, evaluation.subset(held[key]), order, default_ks(layout.n_total), metric="logit_diff"
        )
        k = choose_k(curve, None, 0.8)
        heads = " ".join(f"{layer}.{head}" for layer, head in order[:k])
        print(f"{key!r} | {len(found[key])}, {len(held[key])} | {k} | {heads}")


if __name__ == "__main__":
    main()
