"""``forgetlens sweep``: the learning-rate rule every shipped config's rates come from."""

from __future__ import annotations

import pytest
from helpers import run_cli

from forgetlens.config.options import FinetuneConfig
from forgetlens.pipeline.sweep import SWEEP_SEED, SweepRun, chosen_rates, sweep_configs, sweep_table


def outcome(method, lr, final, kl=0.0, retention=1.0):
    return SweepRun(method=method, lr=lr, base=0.3, final=final, best=max(final, 0.3), kl=kl, retention=retention)


def test_the_rule_takes_the_best_final_accuracy_and_the_smaller_rate_on_a_tie():
    runs = [
        outcome("sft", 1e-4, 0.50),
        outcome("sft", 3e-4, 0.70, kl=50.0, retention=0.1),  # forgetting and drift never enter the rule
        outcome("sft", 1e-3, 0.70),
        outcome("rl", 1e-5, 0.40),
        outcome("rl", 1e-4, 0.35),
    ]
    chosen = chosen_rates(runs)
    assert (chosen["sft"].lr, chosen["rl"].lr) == (3e-4, 1e-5)
    table = sweep_table(runs)
    assert "sft: chosen lr 0.0003 (final target accuracy 0.700)" in table
    assert "| sft | 0.0003 | 0.300 -> 0.700 | 0.700 | 50.000 | 0.100 |" in table


def test_every_rate_runs_once_at_the_sweep_seed_with_its_own_rate():
    base = FinetuneConfig(steps=6, checkpoint_every=2)
    configs = sweep_configs(base, {"sft": [1e-4, 3e-3], "rl": [1e-5]})
    assert list(configs) == ["rl-lr1e-05-s100", "sft-lr0.0001-s100", "sft-lr0.003-s100"]  # RL first
    assert configs["sft-lr0.003-s100"].lr_sft == 3e-3 and configs["rl-lr1e-05-s100"].lr_rl == 1e-5
    assert configs["sft-lr0.003-s100"].lr_rl == base.lr_rl  # the other method's rate is left alone
    assert all(c.seed == SWEEP_SEED and c.checkpoint_every == 6 for c in configs.values())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--lrs", "1e-4,fast"], "--lrs: expected comma-separated numbers, got '1e-4,fast'"),
        (["--rl-lrs", "1e-4,-1"], "--rl-lrs: expected positive learning rates"),
        (["--jobs", "0"], "--jobs: expected at least 1, got 0"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(tmp_path, args, needle):
    result = run_cli("sweep", *args, "--out", str(tmp_path / "sweep"))
    assert result.returncode == 2 and result.stderr.strip() == f"error: {result.stderr.strip()[7:]}"
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_a_sweep_on_the_embedded_model_prints_the_table_and_resumes(tmp_path):
    cfg = tmp_path / "study.yaml"
    cfg.write_text(
        "finetune:\n  steps: 2\n  prompts_per_step: 4\n  prior_eval_examples: 8\n  kl_samples: 1\n"
        "  kl_prompts: 4\n  rl:\n    num_generations: 4\n"
    )
    args = ("sweep", "--config", str(cfg), "--sft-lrs", "1e-3", "--rl-lrs", "1e-4", "--out", str(tmp_path / "s"))
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["rl-lr0.0001-s100", "sft-lr0.001-s100"]
    assert "sft: chosen lr 0.001" in first.stdout and "rl: chosen lr 0.0001" in first.stdout
    again = run_cli(*args)  # every run is complete: read back, not trained again
    assert again.returncode == 0 and again.stdout == first.stdout
