"""RL's loss pass, TRL's scoring of G full copies against shared-prompt scoring, side by side on one model.

    python bench/rl_scoring.py [--model smollm2-135m] [--prompt-tokens 65] [--groups 4] [--group-size 4]
                               [--completion-tokens 16] [--repeats 3]

Builds a GRPO-shaped batch (``--groups`` left-padded prompts of about ``--prompt-tokens`` tokens, each repeated
``--group-size`` times, completions of ``--completion-tokens``; random token ids) and times, in turn, the forward
and backward pass the GRPO loss makes three ways: TRL's fused-head scoring of every row's prompt + completion;
the same copies with a plain LM head on the completion positions only (how much of the gap is TRL's head on
CPU); and ``training/shared_prompt.py``'s one pass per distinct prompt. One torch thread, as the study's workers
use. Prints the median seconds of each, the ratios, and the largest differences in log-probability and gradient
between TRL's scoring and the shared one. The defaults are the main job's shapes (configs/smollm2-135m-quick.yaml:
4 prompts of about 65 chat-templated tokens, G = 4, 16 completion tokens).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from forgetlens.models.loading import load_model
from forgetlens.training.shared_prompt import completion_logps_shared_prompt, full_copies_logps


def grpo_batch(vocab: int, groups: int, group_size: int, prompt_tokens: int, completion_tokens: int):
    """Random token ids shaped like a GRPO micro-batch; prompt g is left-padded by 8 g tokens."""
    gen = torch.Generator().manual_seed(0)
    prompt_len = prompt_tokens + 4 * (groups - 1)  # lengths prompt_len - 8 g average about prompt_tokens
    prompt_ids = torch.randint(100, vocab, (groups, prompt_len), generator=gen)
    prompt_mask = torch.ones_like(prompt_ids)
    for g in range(groups):
        prompt_mask[g, : 8 * g] = 0
    rows = groups * group_size
    completion_ids = torch.randint(100, vocab, (rows, completion_tokens), generator=gen)
    completion_mask = torch.ones_like(completion_ids)
    return (
        prompt_ids.repeat_interleave(group_size, 0),
        prompt_mask.repeat_interleave(group_size, 0),
        completion_ids,
        completion_mask,
    )


def trl_pass(model, *batch):
    """GRPOTrainer's loss-time scoring: every row's prompt + completion through the fused LM head."""
    return full_copies_logps(model, *batch)[0]


def copies_plain_head_pass(model, prompt_ids, prompt_mask, completion_ids, completion_mask):
    """G full copies through the backbone, but only the completion positions through a plain LM head: what of
    the difference is TRL's CPU head rather than the shared prompt."""
    input_ids = torch.cat([prompt_ids, completion_ids], 1)
    attention_mask = torch.cat([prompt_mask, completion_mask], 1)
    keep = completion_ids.size(1)
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [rows, P+C, d]
    logits = model.get_output_embeddings()(hidden[:, -keep - 1 : -1]).float()  # [rows, C, vocab]
    return torch.log_softmax(logits, -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


def shared_pass(model, *batch):
    return completion_logps_shared_prompt(model, *batch, compute_entropy=True)[0]


def timed_backward(score, model, batch) -> tuple[float, torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    start = time.perf_counter()
    logps = score(model, *batch)
    (logps * batch[3]).sum().backward()
    seconds = time.perf_counter() - start
    return seconds, logps.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompt-tokens", type=int, default=65)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--completion-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from trl.trainer.utils import add_fused_lm_head

    torch.set_num_threads(1)
    model = load_model(args.model).model.train()
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    batch = grpo_batch(
        model.config.vocab_size, args.groups, args.group_size, args.prompt_tokens, args.completion_tokens
    )
    times: dict[str, list[float]] = {"trl": [], "plain": [], "shared": []}
    for _ in range(args.repeats):
        trl_s, trl_logps, trl_grads = timed_backward(trl_pass, model, batch)
        plain_s, _, _ = timed_backward(copies_plain_head_pass, model, batch)
        shared_s, logps, grads = timed_backward(shared_pass, model, batch)
        times["trl"].append(trl_s)
        times["plain"].append(plain_s)
        times["shared"].append(shared_s)
    logp_diff = (logps - trl_logps).abs().max().item()
    grad_diff = max(((grads[n] - g).norm() / g.norm().clamp(min=1e-12)).item() for n, g in trl_grads.items())
    rows = args.groups * args.group_size
    print(
        f"{args.model}: {args.groups} prompts of ~{args.prompt_tokens} tokens x G={args.group_size}, "
        f"{args.completion_tokens} completion tokens, forward + backward, median of {args.repeats}"
    )
    print(f"  TRL (G full copies, {rows} rows)        {statistics.median(times['trl']):7.2f} s")
    print(f"  the same copies, plain head on completions {statistics.median(times['plain']):7.2f} s")
    print(f"  shared prompt ({args.groups} prompts + {rows} completions) {statistics.median(times['shared']):7.2f} s")
    trl_s, plain_s, shared_s = (statistics.median(times[k]) for k in ("trl", "plain", "shared"))
    print(
        f"  speed-up {trl_s / shared_s:.2f}x: {trl_s / plain_s:.2f}x from the head, "
        f"{plain_s / shared_s:.2f}x from sharing the prompt"
    )
    print(f"  max |log-prob difference| {logp_diff:.2e}; max relative gradient difference {grad_diff:.2e}")


if __name__ == "__main__":
    main()
