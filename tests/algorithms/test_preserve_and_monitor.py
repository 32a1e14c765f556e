"""Circuit-preserving, replay and KL-regularised fine-tuning, and the training-time CircuitMonitor."""

import copy
import json

import pytest
import torch

from forgetlens.config.methods import METHODS
from forgetlens.config.options import FinetuneConfig, MonitorConfig, PreserveConfig, RLConfig
from forgetlens.errors import ForgetlensError
from forgetlens.models.heads import HeadLayout
from forgetlens.tasks.base import encode_examples
from forgetlens.tasks.registry import get_task


def _attention_noise(model, scale=0.01, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "self_attn" in name:
                p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=gen).to(p.device))


def test_first_order_v_cmap_agrees_with_exact_head_local_cmap(embedded):
    """The monitor's fast estimate against the slow, exact per-head patching it approximates."""
    from forgetlens.circuits.patching import run_metric
    from forgetlens.measure.cross_model import local_cmap
    from forgetlens.measure.first_order_cmap import base_chunk
    from forgetlens.measure.monitor import first_order_v_cmap

    base, layout = embedded.model, HeadLayout.of(embedded.model)
    prompts = encode_examples(embedded.tokenizer, get_task("ioi").examples(32, 5), "ioi")
    tuned = copy.deepcopy(base)
    _attention_noise(tuned)
    te0 = float((run_metric(base, prompts, "logit_diff") - run_metric(base, prompts, "logit_diff", True)).mean())
    fast = first_order_v_cmap(base, tuned, layout, base_chunk(base, layout, prompts, "logit_diff"), te0)
    exact = -local_cmap(base, tuned, layout, prompts, "logit_diff").mean(0) / te0
    assert exact.abs().max() > 0
    assert (fast - exact).abs().max() < 0.1 * exact.abs().max()
    assert torch.corrcoef(torch.stack([fast.flatten(), exact.flatten()]))[0, 1] > 0.99


def test_monitor_on_the_base_itself_reads_zero_vulnerability_and_full_retention(embedded):
    from forgetlens.measure.monitor import CircuitMonitor

    monitor = CircuitMonitor(
        embedded.model, embedded.tokenizer, tasks=["ioi"], n_prompts=16, circuits={"ioi": [(3, 0), (2, 5)]}
    )
    values = monitor.circuit_values(copy.deepcopy(embedded.model))["ioi"]
    assert values["v_circuit"] == 0.0 and values["retention"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_monitor_stops_a_run_whose_retention_a_damaging_learning_rate_forces_down(tmp_path):
    from forgetlens.pipeline.finetune import train

    def run(lr, out):
        cfg = FinetuneConfig(
            method="sft",
            steps=12,
            checkpoint_every=12,
            prompts_per_step=8,
            lr_sft=lr,
            threads=1,
            monitor=MonitorConfig(every=2, tasks=["ioi"], n_prompts=16, threshold=0.9, action="stop"),
        )
        train(cfg, out, resume=False, log=lambda *a: None)
        return json.loads((out / "monitor.json").read_text())["history"], json.loads(
            (out / "training_log.json").read_text()
        )

    history, log = run(3e-2, tmp_path / "damaging")
    assert history[-1].get("stopped") and history[-1]["ioi/retention"] < 0.9
    assert all(h["ioi/retention"] >= 0.9 for h in history[:-1])
    last_step = max(row["step"] for row in log if "loss" in row)
    assert last_step == history[-1]["step"] < 12  # training ended at the measurement that fell below
    assert any("circuit/ioi/retention" in row for row in log)  # the values reached the trainer's logs

    history, _ = run(1e-4, tmp_path / "gentle")  # the default learning rate: no stop
    assert len(history) == 6 and not any(h.get("stopped") for h in history)


def test_monitor_task_the_tokenizer_cannot_render_is_a_named_error(embedded):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from forgetlens.measure.monitor import CircuitMonitor

    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.:|'"))
    vocab = {"<eos>": 0, **{c: i + 1 for i, c in enumerate(chars)}}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE(vocab, merges=[], unk_token="<eos>")),
        eos_token="<eos>",
        pad_token="<eos>",
    )
    with pytest.raises(ForgetlensError, match=r"^task ioi"):  # the task named, with why it cannot be rendered
        CircuitMonitor(embedded.model, tok, tasks=["ioi"], circuits={"ioi": [(0, 0)]})
    with pytest.raises(ForgetlensError, match="monitor tasks: unknown task 'nope'"):
        CircuitMonitor(embedded.model, embedded.tokenizer, tasks=["nope"])


def test_preservation_penalty_sees_only_the_protected_heads(embedded):
    """Zero at the base; unchanged by a change to an unprotected last-layer head; positive for a protected one."""
    from forgetlens.training.regularizers import CircuitPreservation

    base, layout = embedded.model, HeadLayout.of(embedded.model)
    cfg = FinetuneConfig(
        method="sft-preserve",
        preserve=PreserveConfig(lam=1.0, heads="all", tasks=["ioi"], n_prompts=16, prompts_per_step=16),
    )
    penalty = CircuitPreservation(base, embedded.tokenizer, layout, cfg)
    last = layout.n_layers - 1
    penalty.heads[:] = False
    penalty.heads[:, last, 0] = True  # protect one head of the last layer only
    model = copy.deepcopy(base)
    assert float(penalty(model, None, 0)) == 0.0
    attn = layout.attentions(model)[last][1]
    d = layout.d_head
    assert attn.v_proj.out_features // d < layout.n_heads  # GQA: head 0 shares value group 0 with head 1 only
    with torch.no_grad():
        attn.v_proj.weight[d : 2 * d] += 0.5  # value group 1: heads 2 and 3, unprotected
    assert float(penalty(model, None, 0)) == 0.0
    with torch.no_grad():
        attn.v_proj.weight[:d] += 0.5  # the protected head's value group
    assert float(penalty(model, None, 0)) > 0.0


def test_kl_to_base_is_zero_for_the_base_and_positive_after_a_change(embedded):
    from forgetlens.training.regularizers import KLToBase

    term = KLToBase(copy.deepcopy(embedded.model), FinetuneConfig(method="sft-kl", kl_coef=1.0))
    device = embedded.model.device  # the trainer hands the term inputs on the model's device
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]], device=device)
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.tensor([[-100, -100, -100, 8, 9, 10]], device=device),
    }
    model = copy.deepcopy(embedded.model)
    assert float(term(model, inputs, 0)) == pytest.approx(0.0, abs=1e-6)
    _attention_noise(model, scale=0.5)
    assert float(term(model, inputs, 0)) > 1e-4


@pytest.mark.parametrize("method", [name for name, m in METHODS.items() if m.regularizer])
def test_regularised_methods_train_and_log_their_term(tmp_path, method):
    """Every registered method with a loss term (``config/methods.py``) trains with its own trainer and logs it."""
    from forgetlens.pipeline.finetune import train

    cfg = FinetuneConfig(
        method=method,
        steps=2,
        checkpoint_every=2,
        prompts_per_step=4,
        threads=1,
        rl=RLConfig(num_generations=2),
        preserve=PreserveConfig(tasks=["ioi"], n_prompts=8, prompts_per_step=4, discovery_examples=32),
    )
    train(cfg, tmp_path / method, resume=False, log=lambda *a: None)
    log = json.loads((tmp_path / method / "training_log.json").read_text())
    term = METHODS[method].regularizer
    values = [row[f"reg/{term}"] for row in log if f"reg/{term}" in row]
    assert len(values) == 2 and all(v >= 0 for v in values)
    assert ("reward" in log[0]) == (METHODS[method].trainer == "rl")  # GRPO logs its reward, SFT has none
    if term == "replay":
        assert values[0] > 0  # a language-model loss on prior-task documents


def test_monitor_faithfulness_equals_the_measurement_modules(embedded):
    """The monitor's one-batch faithfulness against circuit_metric's separate runs, on a perturbed model."""
    from forgetlens.circuits.patching import circuit_metric, run_metric
    from forgetlens.measure.monitor import _faithfulness

    model, layout = copy.deepcopy(embedded.model), HeadLayout.of(embedded.model)
    _attention_noise(model, scale=0.2)
    prompts = encode_examples(embedded.tokenizer, get_task("induction").examples(24, 9), "induction")
    from forgetlens.circuits.circuit import score_heads

    scores = score_heads(embedded.model, layout, prompts, metric="logit_diff").mean(0).abs().flatten()
    heads = torch.zeros(scores.numel(), dtype=torch.bool)
    heads[scores.argsort(descending=True)[:3]] = True  # a partial circuit: faithfulness well away from 0 and 1
    heads = heads.view(layout.n_layers, layout.n_heads)
    full = run_metric(model, prompts, "logit_diff").mean()
    kept = circuit_metric(model, layout, prompts, heads, "counterfactual", metric="logit_diff", batch_size=24).mean()
    empty = circuit_metric(
        model, layout, prompts, torch.zeros_like(heads), "counterfactual", metric="logit_diff", batch_size=24
    ).mean()
    reference = float((kept - empty) / (full - empty))
    assert abs(reference) > 0.05
    assert _faithfulness(model, layout, prompts, heads, "logit_diff") == pytest.approx(reference, rel=1e-4, abs=1e-6)
