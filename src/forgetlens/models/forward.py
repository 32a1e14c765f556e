"""Forward passes that return what the measurements need: logits at the answer position."""

from __future__ import annotations

import torch

from forgetlens.tasks.base import TaskBatch


def answer_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  answer_pos: torch.Tensor) -> torch.Tensor:
    """Logits at each row's answer position: [batch, pos] -> [batch, vocab]."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    return out.logits[rows, answer_pos]


@torch.no_grad()
def task_accuracy(model, batch: TaskBatch, batch_size: int = 128) -> dict[str, float]:
    """Top-1 accuracy (argmax over the vocabulary is the answer) and mean logit difference on clean prompts."""
    device = next(model.parameters()).device
    correct, diffs = [], []
    for start in range(0, len(batch), batch_size):
        part = batch.subset(range(start, min(start + batch_size, len(batch)))).to(device)
        logits = answer_logits(model, part.clean_ids, part.attention_mask, part.answer_pos)
        correct.append((logits.argmax(-1) == part.answer_ids).float())
        rows = torch.arange(len(part), device=device)
        diffs.append(logits[rows, part.answer_ids] - logits[rows, part.distractor_ids])
    return {"accuracy": torch.cat(correct).mean().item(), "logit_diff": torch.cat(diffs).mean().item()}
