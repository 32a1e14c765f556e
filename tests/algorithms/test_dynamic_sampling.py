"""Dynamic sampling (``rl.oversample``, ``training/dynamic_sampling.py``): which groups a step trains on, and a run
that samples twice the groups it trains on."""

from __future__ import annotations

import json

import pytest
import torch

from forgetlens.config.options import FinetuneConfig, RLConfig
from forgetlens.errors import ForgetlensError
from forgetlens.training.dynamic_sampling import kept_groups


def test_groups_with_reward_variance_are_kept_first_in_the_order_drawn():
    # four groups of 2: the first and third vary, the second and fourth do not
    advantages = torch.tensor([0.5, -0.5, 0.0, 0.0, -0.5, 0.5, 0.0, 0.0])  # [rows]
    assert kept_groups(advantages, 2, 2).tolist() == [0, 2]
    assert kept_groups(advantages, 2, 3).tolist() == [0, 1, 2]  # too few vary: topped up in the order drawn
    assert kept_groups(torch.zeros(8), 2, 2).tolist() == [0, 1]


def test_oversampling_needs_one_batch_a_step():
    with pytest.raises(ForgetlensError, match="rl.oversample: dynamic sampling trains one batch a step"):
        FinetuneConfig(method="rl", micro_batch=4, rl=RLConfig(oversample=2))
    with pytest.raises(ForgetlensError, match="oversample: expected at least 1"):
        RLConfig(oversample=0)


def test_a_run_samples_twice_the_groups_and_trains_on_fewer_without_signal(tmp_path, monkeypatch):
    """Two steps of RL on the embedded model, 4 prompts a step drawn from 8 sampled: the loss sees the step's 4
    groups, the budget keeps both shares, and the trained groups never lack signal more often than the sampled ones
    (signal first)."""
    from trl import GRPOTrainer

    from forgetlens.pipeline.finetune import train

    rows: list[int] = []
    loss = GRPOTrainer.compute_loss

    def counted(self, model, inputs, *args, **kwargs):
        rows.append(len(inputs["completion_ids"]))
        return loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "compute_loss", counted)

    cfg = FinetuneConfig(
        method="rl",
        steps=2,
        checkpoint_every=2,
        prompts_per_step=4,
        threads=1,
        prior_eval_examples=8,
        kl_samples=1,
        rl=RLConfig(num_generations=2, oversample=2, temperature=1.0),
    )
    budget = train(cfg, tmp_path / "run", resume=False, log=lambda *a: None)
    assert rows == [4 * 2, 4 * 2]  # prompts_per_step x num_generations, not the 8 x 2 sampled
    sampled, trained = budget["frac_reward_zero_std"], budget["frac_trained_zero_std"]
    assert len(sampled) == len(trained) == 2
    assert all(t <= s for s, t in zip(sampled, trained)), (sampled, trained)
    log = json.loads((tmp_path / "run" / "training_log.json").read_text())
    assert [h["frac_trained_zero_std"] for h in log if "frac_trained_zero_std" in h] == trained
