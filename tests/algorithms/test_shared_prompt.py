"""Shared-prompt scoring of GRPO completions equals TRL's scoring of G full copies (training/shared_prompt.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import make_tiny

from forgetlens.training.shared_prompt import completion_logps_shared_prompt, full_copies_logps, prompt_groups

VOCAB = 97


def _grpo_batch(groups: int = 3, group_size: int = 4, prompt_len: int = 11, completion_len: int = 6, seed: int = 0):
    """A left-padded GRPO batch: each prompt repeated ``group_size`` times, completions right-padded after EOS."""
    gen = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(1, VOCAB, (groups, prompt_len), generator=gen)
    prompt_mask = torch.ones(groups, prompt_len, dtype=torch.long)
    for g in range(groups):  # prompts of different lengths: left padding of g * 2 tokens
        prompt_mask[g, : 2 * g] = 0
        prompt_ids[g, : 2 * g] = 0
    prompt_ids = prompt_ids.repeat_interleave(group_size, 0)  # [rows, P]
    prompt_mask = prompt_mask.repeat_interleave(group_size, 0)
    rows = groups * group_size
    completion_ids = torch.randint(1, VOCAB, (rows, completion_len), generator=gen)  # [rows, C]
    completion_mask = torch.ones(rows, completion_len, dtype=torch.long)
    for r in range(rows):  # some completions stop early
        stop = completion_len - (r % 3)
        completion_mask[r, stop:] = 0
        completion_ids[r, stop:] = 0
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def test_prompt_groups_finds_runs_of_equal_prompts():
    prompt_ids, prompt_mask, _, _ = _grpo_batch(groups=3, group_size=4)
    first, group_of_row = prompt_groups(prompt_ids, prompt_mask)
    assert first.tolist() == [0, 4, 8]
    assert group_of_row.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # a group split across micro-batches, and groups of one, are still grouped correctly
    first, group_of_row = prompt_groups(prompt_ids[2:7], prompt_mask[2:7])
    assert first.tolist() == [0, 2] and group_of_row.tolist() == [0, 0, 1, 1, 1]
    # rows shuffled, as TRL's _prepare_inputs leaves them: still one group per distinct prompt
    order = torch.tensor([5, 0, 9, 4, 1, 8, 11, 2, 6, 10, 3, 7])
    first, group_of_row = prompt_groups(prompt_ids[order], prompt_mask[order])
    assert first.tolist() == [0, 1, 2]  # groups numbered by first appearance: rows 5, 0, 9 of the batch
    number = {1: 0, 0: 1, 2: 2}  # prompt (row // 4) -> its group, by first appearance
    assert group_of_row.tolist() == [number[int(r) // 4] for r in order]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prompt_scoring_matches_trl_values_and_gradients(arch, temperature):
    from trl.trainer.utils import add_fused_lm_head

    model = make_tiny(arch, VOCAB, seed=3)  # eval mode: GPT-2's dropout would draw different masks per path
    add_fused_lm_head(model, temperature=temperature, outputs=("log_probs", "entropy"))
    batch = _grpo_batch()
    shuffle = torch.randperm(batch[0].size(0), generator=torch.Generator().manual_seed(1))
    batch = tuple(t[shuffle] for t in batch)  # the order TRL's loss pass sees: copies of a prompt apart
    completion_mask = batch[3].bool()
    trl_logps, trl_entropy = full_copies_logps(model, *batch)
    (trl_logps * completion_mask).sum().backward()
    trl_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    logps, entropy = completion_logps_shared_prompt(model, *batch, temperature=temperature, compute_entropy=True)
    (logps * completion_mask).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    torch.testing.assert_close(logps[completion_mask], trl_logps[completion_mask], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(entropy[completion_mask], trl_entropy[completion_mask], atol=2e-5, rtol=1e-5)
    assert (logps[~completion_mask] == 0).all()
    assert grads.keys() == trl_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, trl_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    # the check can fail: a prompt that differs between two rows of a "group" is scored differently
    changed = [t.clone() for t in batch]
    changed[0][1, -1] = (changed[0][1, -1] + 1) % VOCAB
    changed_logps, _ = completion_logps_shared_prompt(model, *changed, temperature=temperature)
    assert not torch.allclose(changed_logps[1], logps[1])


def _one_rl_step(tmp_path, shared: bool, lora_rank: int = 0, beta: float = 0.0):
    from datasets import Dataset

    from forgetlens.config.options import FinetuneConfig
    from forgetlens.models.loading import load_model
    from forgetlens.training.data import conversational_rows, target_splits, training_schedule
    from forgetlens.training.trainers import build_rl_trainer

    cfg = FinetuneConfig(method="rl", steps=1, checkpoint_every=10, prompts_per_step=4, lora_rank=lora_rank)
    cfg.rl.num_generations = 4
    cfg.rl.shared_prompt_scoring = shared
    cfg.rl.beta = beta
    loaded = load_model("embedded")
    train, _ = target_splits(cfg)
    dataset = Dataset.from_list(conversational_rows(training_schedule(train, cfg), with_completion=False))
    loaded.model.train()
    trainer = build_rl_trainer(loaded.model, loaded.tokenizer, dataset, cfg, tmp_path / f"shared-{shared}")
    trainer.train()
    return trainer, trainer.state.log_history[0]


@pytest.mark.parametrize("lora_rank, beta", [(0, 0.0), (4, 0.0), (0, 0.5)])
def test_rl_trainer_step_is_the_same_with_shared_prompt_scoring(tmp_path, lora_rank, beta):
    """One GRPO step on the embedded model (full, LoRA, and with a KL penalty, whose reference pass TRL runs in
    chunks): the same samples (same seed, same weights), so the same loss and gradient norm, whichever scoring
    was used; and the option really switches the path."""
    shared_trainer, shared_log = _one_rl_step(tmp_path, shared=True, lora_rank=lora_rank, beta=beta)
    trl_trainer, trl_log = _one_rl_step(tmp_path, shared=False, lora_rank=lora_rank, beta=beta)
    assert shared_trainer.shared_prompt_calls >= (2 if beta else 1)  # with beta, the reference pass too
    assert shared_trainer.trl_scoring_calls == 0
    assert not hasattr(trl_trainer, "shared_prompt_calls")
    assert shared_log["reward"] == trl_log["reward"]  # same completions
    assert shared_log["loss"] == pytest.approx(trl_log["loss"], rel=1e-4, abs=1e-6)
    assert shared_log["grad_norm"] == pytest.approx(trl_log["grad_norm"], rel=1e-4)
    assert shared_log["entropy"] == pytest.approx(trl_log["entropy"], rel=1e-4)


def test_falls_back_to_trl_scoring_where_sharing_is_not_exact():
    from forgetlens.training.shared_prompt import has_active_dropout, sharing_is_exact

    gpt2 = make_tiny("gpt2", VOCAB)
    assert not has_active_dropout(gpt2) and sharing_is_exact(gpt2)  # eval mode
    assert has_active_dropout(gpt2.train())  # resid/attn dropout 0.1: each copy would draw its own masks
    assert not sharing_is_exact(gpt2)
    llama = make_tiny("llama", VOCAB).train()
    assert not has_active_dropout(llama) and sharing_is_exact(llama)
    llama.config.logit_scale = 2.0  # scaled logits: TRL's head applies it, shared scoring does not
    assert not sharing_is_exact(llama)
    qwen2 = make_tiny("qwen2", VOCAB).train()
    assert sharing_is_exact(qwen2)
    qwen2.config.layer_types = ["sliding_attention"] * qwen2.config.num_hidden_layers
    assert not sharing_is_exact(qwen2)
    checkpointed = make_tiny("llama", VOCAB).train()
    checkpointed.gradient_checkpointing_enable()
    assert not sharing_is_exact(checkpointed)
