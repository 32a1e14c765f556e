"""What a checkpoint puts first where it and the base disagree on a prior task's prompts.

    python experiments/prior_top1_changes.py --checkpoint runs/frontier/runs/sft-lr0.0001-s0/checkpoints/checkpoint-48 \
        [--model smollm2-135m] [--tasks fact_recall,induction] [--n 128]

On the prompts the frontier evaluates (``prior_eval_examples`` of them, seed ``PRIOR_EVAL_SEED``), each prompt whose
top-1 correctness differs between the base and the checkpoint, with both models' top-1 tokens; then the counts of
base top-1 tokens on the prompts the checkpoint fixed (what the base said instead of the answer). A prior-task
score can rise because a model answers sooner (a filler token such as " the" was first before), which is a change
of form, not of knowledge: this tells the two apart. Prints JSON lines; writes nothing.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from forgetlens.models.forward import answer_logits
from forgetlens.models.loading import load_model
from forgetlens.pipeline.evaluate import PRIOR_EVAL_SEED
from forgetlens.tasks.base import encode_examples
from forgetlens.tasks.registry import get_task
from forgetlens.training.checkpoints import load_checkpoint


@torch.no_grad()
def top1(model, batch) -> torch.Tensor:
    """[prompts]: the argmax token at each prompt's answer position."""
    logits = answer_logits(model, batch.clean_ids, batch.attention_mask, batch.answer_pos)  # [prompts, vocab]
    return logits.argmax(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", default="fact_recall,induction")
    parser.add_argument("--n", type=int, default=128)
    args = parser.parse_args()
    base = load_model(args.model)
    tuned = load_checkpoint(args.checkpoint, args.model)
    tok = base.tokenizer
    for name in args.tasks.split(","):
        task = get_task(name)
        batch = encode_examples(tok, task.examples(args.n, PRIOR_EVAL_SEED), task.name)
        before, after = top1(base.model, batch), top1(tuned, batch)
        right_before, right_after = before == batch.answer_ids, after == batch.answer_ids
        fixed = (~right_before & right_after).nonzero().flatten().tolist()
        broken = (right_before & ~right_after).nonzero().flatten().tolist()
        print(
            json.dumps(
                {
                    "task": name,
                    "base_correct": int(right_before.sum()),
                    "tuned_correct": int(right_after.sum()),
                    "fixed": len(fixed),
                    "broken": len(broken),
                    "base_top1_where_fixed": Counter(tok.decode(before[i]) for i in fixed).most_common(8),
                    "tuned_top1_where_broken": Counter(tok.decode(after[i]) for i in broken).most_common(8),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
