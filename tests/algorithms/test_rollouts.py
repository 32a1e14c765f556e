"""Shared-prefill sampling of GRPO groups draws what ``generate`` draws (training/rollouts.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import make_tiny

from forgetlens.training.rollouts import common_prefix, full_attention, left_pad, plain_sampling, sample_completions

VOCAB = 97
STOP, PAD = 5, 0


def _prompts(groups: int = 3, group_size: int = 4, seed: int = 0) -> list[list[int]]:
    """``groups`` prompts of different lengths (so the batch is left-padded), each repeated ``group_size`` times."""
    gen = torch.Generator().manual_seed(seed)
    distinct = [torch.randint(6, VOCAB, (7 + 2 * g,), generator=gen).tolist() for g in range(groups)]
    return [p for p in distinct for _ in range(group_size)]


def _generate(model, prompts: list[list[int]], max_new: int, sample: bool) -> list[list[int]]:
    ids, mask = left_pad(prompts, PAD)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new,
        do_sample=sample,
        temperature=1.0 if sample else None,
        top_p=1.0 if sample else None,
        top_k=0 if sample else None,
        eos_token_id=[STOP],
        pad_token_id=PAD,
    )
    rows = []
    for row in out[:, ids.shape[1] :].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t == STOP), len(row))
        rows.append(row[:cut])
    return rows


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2", "gemma3"])
@pytest.mark.parametrize("sample", [False, True])
def test_completions_equal_generates_token_for_token(arch, sample):
    """Greedy: the same tokens as ``generate``. Sampled at temperature 1 from the same seed: ``generate`` draws one
    multinomial over the whole batch per step, as the shared prefill does, so the same samples too; and the check
    can fail (another seed draws other completions)."""
    model = make_tiny(arch, VOCAB, seed=1).eval()
    prompts = _prompts()
    torch.manual_seed(7)
    expected = _generate(model, prompts, 9, sample)
    torch.manual_seed(7)
    got = sample_completions(model, prompts, 9, [STOP], PAD, greedy=not sample)
    assert got == expected
    if sample:
        torch.manual_seed(8)
        assert sample_completions(model, prompts, 9, [STOP], PAD) != expected


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_a_shared_prefix_is_computed_once_and_changes_nothing(arch):
    """Prompts that all start with the same system turn: the prefix is run once, the distinct remainders (of
    different lengths: padding sits between prefix and remainder) on top of its cache; greedy completions equal
    ``generate``'s on the full prompts, and sampling draws the same tokens from the same seed."""
    model = make_tiny(arch, VOCAB, seed=4).eval()
    gen = torch.Generator().manual_seed(3)
    system = torch.randint(6, VOCAB, (10,), generator=gen).tolist()
    prompts = [system + torch.randint(6, VOCAB, (3 + g,), generator=gen).tolist() for g in range(4) for _ in range(3)]
    assert common_prefix(prompts) == 10
    assert full_attention(model) == (arch != "gemma3")  # Gemma 3's sliding-window layers: no prefix sharing
    for sample in (False, True):
        torch.manual_seed(11)
        expected = _generate(model, prompts, 8, sample)
        torch.manual_seed(11)
        assert sample_completions(model, prompts, 8, [STOP], PAD, greedy=not sample) == expected


def test_completions_stop_at_the_stop_token_and_respect_the_cap():
    model = make_tiny("llama", VOCAB, seed=2).eval()
    torch.manual_seed(0)
    got = sample_completions(model, _prompts(2, 8), 6, [STOP, 7, 9, 11], PAD)
    assert all(1 <= len(c) <= 6 for c in got)
    assert all(t not in (STOP, 7, 9, 11) for c in got for t in c[:-1])  # a stop token only ever ends a row
    assert any(c[-1] in (STOP, 7, 9, 11) for c in got)


def test_only_plain_sampling_is_taken_over():
    from transformers import GenerationConfig

    assert plain_sampling(GenerationConfig(do_sample=True, temperature=0.7, top_p=1.0, top_k=0))
    assert not plain_sampling(GenerationConfig(do_sample=True, top_p=0.9, top_k=0))
    assert not plain_sampling(GenerationConfig(do_sample=True, top_k=50))
    assert not plain_sampling(GenerationConfig(do_sample=True, top_k=0, repetition_penalty=1.1))


def _one_rl_step(tmp_path, shared_prefill: bool, checkpointing: bool = False):
    from datasets import Dataset

    from forgetlens.config.options import FinetuneConfig
    from forgetlens.models.loading import load_model
    from forgetlens.training.data import conversational_rows, target_splits, training_schedule
    from forgetlens.training.trainers import build_rl_trainer

    cfg = FinetuneConfig(method="rl", steps=1, checkpoint_every=10, prompts_per_step=4)
    cfg.rl.num_generations = 4
    cfg.rl.shared_prefill_generation = shared_prefill
    cfg.gradient_checkpointing = checkpointing
    loaded = load_model("embedded")
    train, _ = target_splits(cfg)
    dataset = Dataset.from_list(conversational_rows(training_schedule(train, cfg), with_completion=False))
    loaded.model.train()
    trainer = build_rl_trainer(
        loaded.model, loaded.tokenizer, dataset, cfg, tmp_path / f"prefill-{shared_prefill}-{checkpointing}"
    )
    trainer.train()
    return trainer, trainer.state.log_history[0]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_rl_step_with_shared_prefill_is_the_step_trl_generation_takes(tmp_path, checkpointing):
    """One GRPO step on the embedded model, with and without gradient checkpointing (which drops a training-mode
    model's cache): the shared prefill is used, and it draws the same completions as TRL's ``generate`` path from
    the same seed, so reward, loss and gradient norm agree."""
    shared, shared_log = _one_rl_step(tmp_path, shared_prefill=True, checkpointing=checkpointing)
    trl, trl_log = _one_rl_step(tmp_path, shared_prefill=False, checkpointing=checkpointing)
    assert shared.shared_prefill_calls == 1 and shared.trl_generation_calls == 0
    assert not hasattr(trl, "shared_prefill_calls")
    assert shared_log["reward"] == trl_log["reward"]
    assert shared_log["completions/mean_length"] == trl_log["completions/mean_length"]
    assert shared_log["loss"] == pytest.approx(trl_log["loss"], rel=1e-4, abs=1e-6)
    assert shared_log["grad_norm"] == pytest.approx(trl_log["grad_norm"], rel=1e-4)
