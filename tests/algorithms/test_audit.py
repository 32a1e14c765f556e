"""Vulnerability metrics against ground truth: identical models, controlled damage, CI width."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import run_cli

from forgetlens.analysis.compare import compare_models
from forgetlens.analysis.vulnerability import circuit_weights
from forgetlens.circuits.circuit import head_mask
from forgetlens.circuits.discover import discover_circuit, task_splits
from forgetlens.config.methods import DEFAULT_COMPARISON
from forgetlens.config.options import DiscoveryConfig
from forgetlens.measure.circuit_damage import circuit_measurements
from forgetlens.models.heads import HeadLayout
from forgetlens.tasks import get_task

TASK = "copying"  # its circuit is compact (4 of 32 heads), leaving whole key/value groups outside it


@pytest.fixture(scope="module")
def setup(embedded):
    model, tok = embedded.model, embedded.tokenizer
    layout = HeadLayout.of(model)
    circuit = discover_circuit(model, tok, get_task(TASK), DiscoveryConfig(n_examples=64, seed=1))
    _, evaluation = task_splits(tok, get_task(TASK), 64, seed=1)
    mask = head_mask(circuit.heads, layout)
    weights = circuit_weights(circuit.scores.double().numpy(), mask.numpy())
    base_m = circuit_measurements(model, layout, evaluation, mask, metric="logit_diff")
    return model, layout, circuit, evaluation, mask, weights, base_m


def damaged(model, layout, heads, scale, seed=0):
    """A copy whose ``heads`` get ``scale`` x (a fixed random direction) x weight std added to their slices of
    o_proj (columns) and v_proj (rows of the key/value group they read; shared with the group's other query head,
    so the control below draws only heads whose group holds no circuit head)."""
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    group = layout.n_heads // out.config.num_key_value_heads
    with torch.no_grad():
        for layer, block in enumerate(out.model.layers):
            o, v = block.self_attn.o_proj.weight, block.self_attn.v_proj.weight
            o_noise = torch.randn(o.shape, generator=g).to(o.device)  # drawn on the CPU: the same on any device
            v_noise = torch.randn(v.shape, generator=g).to(v.device)
            o_std, v_std = o.std(), v.std()
            for l, h in heads:
                if l == layer:
                    cols = slice(h * layout.d_head, (h + 1) * layout.d_head)
                    rows = slice((h // group) * layout.d_head, (h // group + 1) * layout.d_head)
                    o[:, cols] += scale * o_std * o_noise[:, cols]
                    v[rows] += scale * v_std * v_noise[rows] / group
    return out


def compare(setup, tuned_models, n_boot=300):
    model, layout, circuit, evaluation, mask, weights, base_m = setup
    tuned = {
        name: circuit_measurements(m, layout, evaluation, mask, base=model, metric="logit_diff")
        for name, m in tuned_models.items()
    }
    return compare_models(
        base_m, tuned, mask.numpy(), weights, n_boot=n_boot, seed=0, n_perm=500, comparisons=[DEFAULT_COMPARISON]
    )


@pytest.mark.slow
def test_identical_models_give_exactly_zero(setup):
    model = setup[0]
    result = compare(setup, {"sft": copy.deepcopy(model), "rl": copy.deepcopy(model)}, n_boot=100)
    for name in ("sft", "rl"):
        s = result["models"][name]
        assert np.all(np.array(s["v_cmap"]["value"]) == 0)
        assert np.all(np.array(s["v_imp"]["value"]) == 0)
        assert np.all(np.array(s["drift"]["value"]) == 0)
        assert s["retention"]["value"] == 1.0
        assert s["v_circuit"]["value"] == 0.0 and s["preserved_fraction"]["value"] == 1.0
    assert list(result["dcv"]) == [""]
    for key, stat in result["dcv"][""].items():
        assert np.all(np.array(stat["value"]) == 0), key
    assert np.all(np.array(result["dcv_test"][""]["p_value"]) == 1.0)


@pytest.mark.slow
def test_damage_to_circuit_heads_is_monotone(setup):
    model, layout, circuit = setup[0], setup[1], setup[2]
    scales = [0.5, 1.0, 2.0]
    result = compare(setup, {f"s{s}": damaged(model, layout, circuit.heads, s) for s in scales})
    v = [result["models"][f"s{s}"]["v_circuit"]["value"] for s in scales]
    d = [result["models"][f"s{s}"]["drift_circuit"]["value"] for s in scales]
    assert v[0] < v[1] < v[2] and v[0] > 0
    assert 0 < d[0] < d[1] < d[2]
    # Faithfulness retention is not asserted: damage to C0 lowers m(C0) and m(full) together, so the ratio can
    # move either way (induction on the shipped model: 0.997 at scale 0.5, 1.041 at 1.0).


def test_damage_elsewhere_leaves_v_circuit_ci_covering_zero(setup):
    model, layout, circuit = setup[0], setup[1], setup[2]
    members = set(circuit.heads)
    group = layout.n_heads // model.config.num_key_value_heads
    groups_with_members = {(l, h // group) for l, h in members}
    others = [
        (l, h)
        for l in range(layout.n_layers)
        for h in range(layout.n_heads)
        if (l, h // group) not in groups_with_members
    ]
    assert len(others) >= len(members)
    chosen = [others[i] for i in np.random.default_rng(0).choice(len(others), size=len(members), replace=False)]
    stat = compare(setup, {"control": damaged(model, layout, chosen, 1.0)})["models"]["control"]["v_circuit"]
    assert stat["ci_low"] <= 0.0 <= stat["ci_high"]


@pytest.mark.slow
def test_ci_width_shrinks_with_more_prompts(embedded):
    model, tok = embedded.model, embedded.tokenizer
    layout = HeadLayout.of(model)
    circuit = discover_circuit(model, tok, get_task(TASK), DiscoveryConfig(n_examples=64, seed=2))
    mask = head_mask(circuit.heads, layout)
    weights = circuit_weights(circuit.scores.double().numpy(), mask.numpy())
    tuned = damaged(model, layout, circuit.heads, 1.0)
    widths = []
    for n in (24, 96):
        _, evaluation = task_splits(tok, get_task(TASK), n, seed=2)
        res = compare_models(
            circuit_measurements(model, layout, evaluation, mask, metric="logit_diff"),
            {"t": circuit_measurements(tuned, layout, evaluation, mask, base=model, metric="logit_diff")},
            mask.numpy(),
            weights,
            n_boot=300,
            seed=0,
            comparisons=[DEFAULT_COMPARISON],
        )
        s = res["models"]["t"]["v_circuit"]
        widths.append(s["ci_high"] - s["ci_low"])
    assert widths[1] < widths[0]


def _audit(*args):
    return subprocess.run([sys.executable, "-m", "forgetlens", "audit", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--base", "embedded", "--tuned", "broken", "--out", "x.json"], "expected NAME=PATH"),
        (["--base", "embedded", "--tuned", "a=/no/such/dir", "--out", "x.json"], "/no/such/dir does not exist"),
        (
            ["--base", "embedded", "--tuned", "a=embedded", "--tasks", "ioi,nope", "--out", "x.json"],
            "unknown task 'nope'",
        ),
    ],
)
def test_audit_bad_input(tmp_path, args, needle):
    result = run_cli("audit", *args, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and needle in lines[0], result.stderr


@pytest.mark.slow
def test_audit_rejects_a_different_head_layout(tmp_path, tokenizer):
    from helpers import make_tiny

    make_tiny("qwen2", len(tokenizer)).save_pretrained(tmp_path / "small")
    tokenizer.save_pretrained(tmp_path / "small")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forgetlens",
            "audit",
            "--base",
            "embedded",
            "--tuned",
            f"x={tmp_path / 'small'}",
            "--out",
            str(tmp_path / "a.json"),
        ],
        capture_output=True,
        text=True,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "head layout" in lines[0], result.stderr


@pytest.mark.slow
def test_audit_cli_on_a_finetune_run_and_a_model(tmp_path, embedded):
    from forgetlens.config.options import FinetuneConfig
    from forgetlens.pipeline.finetune import finetune

    cfg = FinetuneConfig(
        method="sft", steps=2, checkpoint_every=2, prompts_per_step=4, prior_eval_examples=8, kl_samples=1
    )
    finetune(cfg, tmp_path / "run")
    out = tmp_path / "audit.json"
    result = _audit(
        "--base",
        "embedded",
        "--tuned",
        f"sft={tmp_path / 'run'}",
        "--tuned",
        "same=embedded",
        "--tasks",
        "ioi",
        "--n-boot",
        "50",
        "--n-examples",
        "24",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert set(data["tasks"]["ioi"]["models"]) == {"sft@2", "same"}
    assert data["tasks"]["ioi"]["models"]["same"]["retention"]["value"] == 1.0
    assert out.with_suffix(".per_head.csv").read_text().startswith("task,model,layer,head")
    paired = data["tasks"]["ioi"]["paired_tests"]  # each model against the base, on the same prompts
    assert set(paired) == {"sft@2 - base", "same - base"}
    same = paired["same - base"]  # the base model against itself: nothing differs, exactly
    assert same["mcnemar_top1"] == {"only_a": 0, "only_b": 0, "p": 1.0} and same["logp_answer"]["value"] == 0.0
    assert "same - base, same prompts: top-1 only first / only second 0 / 0 (McNemar p 1)" in result.stdout


def test_paired_behaviour_tests_find_a_planted_loss_and_pair_rl_with_sft():
    from forgetlens.analysis.compare import paired_behaviour_tests

    n = 40
    base = {"correct": [1] * n, "logp_answer": [-0.1] * n}
    lost = {"correct": [0] * 8 + [1] * 32, "logp_answer": [-3.0] * 8 + [-0.1] * 32}  # 8 prompts forgotten
    models = {"base": base, "sft-s0@4": base, "rl-s0@4": lost}
    tests = paired_behaviour_tests(models, n_boot=500, seed=0, comparisons=[DEFAULT_COMPARISON])
    assert set(tests) == {"sft-s0@4 - base", "rl-s0@4 - base", "rl-s0@4 - sft-s0@4"}
    rl = tests["rl-s0@4 - sft-s0@4"]
    assert rl["mcnemar_top1"]["only_a"] == 8 and rl["mcnemar_top1"]["only_b"] == 0 and rl["mcnemar_top1"]["p"] < 0.01
    assert rl["logp_answer"]["value"] == pytest.approx(-8 * 2.9 / n) and rl["logp_answer"]["ci_high"] < 0
    assert tests["sft-s0@4 - base"]["mcnemar_top1"]["p"] == 1.0


def test_local_cmap_puts_a_single_head_edit_on_that_head_only(setup):
    """Tuned = base with noise in one head's query rows and output columns only.  Then the tuned model is the
    base with that head swapped, so its local CMAP must equal m_tuned - m_base and every other head's must be
    exactly 0; total CMAP, which carries upstream changes, also moves heads downstream of it."""
    from forgetlens.circuits.patching import run_metric
    from forgetlens.measure.cross_model import cross_model_patching

    model, layout, evaluation = setup[0], setup[1], setup[3]
    layer, head = 1, 3
    tuned = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    cols = slice(head * layout.d_head, (head + 1) * layout.d_head)
    with torch.no_grad():
        attn = tuned.model.layers[layer].self_attn
        device = attn.q_proj.weight.device
        attn.q_proj.weight[cols] += 0.5 * torch.randn(attn.q_proj.weight[cols].shape, generator=g).to(device)
        attn.o_proj.weight[:, cols] += 0.5 * torch.randn(attn.o_proj.weight[:, cols].shape, generator=g).to(device)
    part = evaluation.subset(range(16))
    local = cross_model_patching(model, tuned, layout, part, "logit_diff", "local")
    expected = (run_metric(tuned, part, "logit_diff") - run_metric(model, part, "logit_diff")).cpu()
    torch.testing.assert_close(local[:, layer, head], expected, atol=1e-4, rtol=1e-4)
    others = torch.ones(layout.n_layers, layout.n_heads, dtype=torch.bool)
    others[layer, head] = False
    assert torch.all(local[:, others] == 0)
    total = cross_model_patching(model, tuned, layout, part, "logit_diff", "total")
    assert total[:, layer + 1 :].abs().max() > 1e-3


def test_head_writes_reads_w_o_as_calling_the_projection_does(embedded):
    """The einsum fast path for nn.Linear against calling the module on one head at a time (the slow reference)."""
    from forgetlens.measure.cross_model import head_writes

    layout = HeadLayout.of(embedded.model)
    proj = layout.projections(embedded.model)[1]
    z = torch.randn(3, 5, layout.n_heads, layout.d_head, generator=torch.Generator().manual_seed(0))
    z = z.to(proj.weight.device)
    reference = []
    for head in range(layout.n_heads):
        only = torch.zeros_like(z)
        only[:, :, head] = z[:, :, head]
        reference.append(proj(only.flatten(2)) - proj(torch.zeros_like(only).flatten(2)))
    reference = torch.stack(reference)  # [head, batch, pos, d_model]
    wrapped = torch.nn.Sequential(proj)  # not an nn.Linear: the generic path
    with torch.no_grad():
        assert torch.allclose(head_writes(proj, z, layout), reference, atol=1e-5)
        assert torch.allclose(head_writes(wrapped, z, layout), reference, atol=1e-5)
        assert torch.allclose(reference.sum(0), proj(z.flatten(2)) - proj(torch.zeros_like(z).flatten(2)), atol=1e-5)


@pytest.mark.slow
def test_first_order_measurement_agrees_with_exact_patching_everywhere(setup):
    """CMAP estimated to first order and patched exactly only on C0 + top-M gives the same V(C0), DCV(C0) and
    exact-set values as patching every head: equal where patched, each point inside the other's interval."""
    model, layout, circuit, evaluation, mask, weights, base_m = setup
    members = set(circuit.heads)
    others = [(l, h) for l in range(layout.n_layers) for h in range(layout.n_heads) if (l, h) not in members]
    tuned = {"sft": damaged(model, layout, circuit.heads, 1.0), "rl": damaged(model, layout, others[:4], 1.0, seed=1)}
    results = {}
    for top_m in (None, 4):
        measured = {
            name: circuit_measurements(m, layout, evaluation, mask, base=model, top_m=top_m, metric="logit_diff")
            for name, m in tuned.items()
        }
        if top_m is not None:
            for name, m in measured.items():
                exact_set = m.cmap_exact
                assert exact_set[mask.numpy()].all() and exact_set.sum() == mask.sum() + 4
                assert np.array_equal(m.cmap[:, exact_set], results["exact"][1][name].cmap[:, exact_set])
                assert np.array_equal(
                    m.cmap_total[:, m.cmap_total_exact], results["exact"][1][name].cmap_total[:, m.cmap_total_exact]
                )
        key = "exact" if top_m is None else "first_order"
        results[key] = (
            compare_models(
                base_m, measured, mask.numpy(), weights, 300, 0, n_perm=100, comparisons=[DEFAULT_COMPARISON]
            ),
            measured,
        )
    exact, fast = results["exact"][0], results["first_order"][0]
    for name in ("sft", "rl"):
        for key in ("v_circuit", "v_circuit_total"):
            a, b = exact["models"][name][key], fast["models"][name][key]
            assert a["value"] == pytest.approx(b["value"], abs=1e-9)
    for key in ("v_circuit", "v_circuit_total"):
        a, b = exact["dcv"][""][key], fast["dcv"][""][key]
        assert b["ci_low"] <= a["value"] <= b["ci_high"] and a["ci_low"] <= b["value"] <= a["ci_high"]


def test_first_order_cmap_tracks_exact_patching_for_small_changes(setup):
    from scipy.stats import spearmanr

    model, layout, circuit, evaluation, mask = setup[:5]
    everyone = [(l, h) for l in range(layout.n_layers) for h in range(layout.n_heads)]
    m = circuit_measurements(
        damaged(model, layout, everyone, 0.05), layout, evaluation, mask, base=model, metric="logit_diff"
    )
    for exact, estimate in ((m.cmap, m.cmap_estimate), (m.cmap_total, m.cmap_total_estimate)):
        assert spearmanr(exact.mean(0).ravel(), estimate.mean(0).ravel()).statistic > 0.9


def test_first_order_measurement_of_identical_models_is_exactly_zero(setup):
    model, layout, circuit, evaluation, mask, weights, base_m = setup
    m = circuit_measurements(copy.deepcopy(model), layout, evaluation, mask, base=model, top_m=4, metric="logit_diff")
    for values in (m.cmap, m.cmap_estimate, m.cmap_total, m.cmap_total_estimate, m.drift):
        assert np.all(values == 0)


def test_a_base_circuit_read_back_is_the_one_written_and_stored_measurements_must_fit(setup, embedded):
    import dataclasses

    from forgetlens.errors import ForgetlensError
    from forgetlens.measure.base_circuit import BaseCircuit

    model, layout, circuit, evaluation, mask, weights, base_m = setup
    cfg = DiscoveryConfig(n_examples=64, seed=1)
    read_back = BaseCircuit.of(embedded, layout, get_task(TASK), circuit, cfg, base_m)
    assert torch.equal(read_back.mask, mask) and np.array_equal(read_back.weights, weights)
    assert torch.equal(read_back.evaluation.clean_ids, evaluation.clean_ids)
    short = dataclasses.replace(
        base_m, **{k: getattr(base_m, k)[:10] for k in ("ie", "te", "m_full", "m_circuit", "m_empty")}
    )
    with pytest.raises(ForgetlensError, match="cover 10 prompts, the evaluation split 64"):
        BaseCircuit.of(embedded, layout, get_task(TASK), circuit, cfg, short)


def test_every_dcv_form_is_positive_when_sft_damages_more(setup):
    """SFT's circuit heads damaged, RL's model the base itself: DCV(C0) is positive; every form keeps that
    convention, measures of damage as SFT - RL and measures of what was kept (faithfulness retention, preserved
    fraction) as RL - SFT; and the mirror pair gives the mirror sign."""
    model, layout, circuit = setup[0], setup[1], setup[2]
    hurt = damaged(model, layout, circuit.heads, 2.0)
    for sft, rl, sign in ((hurt, copy.deepcopy(model), 1), (copy.deepcopy(model), hurt, -1)):
        result = compare(setup, {"sft": sft, "rl": rl}, n_boot=50)
        dcv, a, b = result["dcv"][""], result["models"]["sft"], result["models"]["rl"]
        assert sign * dcv["v_circuit"]["value"] > 0
        for key in ("v_circuit", "v_imp_circuit", "drift_circuit", "vulnerable_fraction"):
            assert dcv[key]["value"] == pytest.approx(a[key]["value"] - b[key]["value"]), key
        for key in ("retention", "preserved_fraction"):
            assert dcv[key]["value"] == pytest.approx(b[key]["value"] - a[key]["value"]), key


@pytest.mark.slow
def test_audit_finds_own_circuits_and_an_identical_model_keeps_the_base_circuit_exactly(tmp_path):
    """``--own-circuits dbm``: the base's DBM circuit (and one per half of the discovery prompts, the ceiling) and
    each tuned model's; the base model audited as a tuned one finds the same masks, so it keeps every head
    (retention 1, Jaccard 1, no mask shift); a method that does not exist is one line naming the flag."""
    out = tmp_path / "audit.json"
    result = run_cli(
        "audit", "--base", "embedded", "--tuned", "same=embedded", "--tasks", "ioi", "--own-circuits", "dbm",
        "--n-boot", "50", "--n-examples", "16", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["config"]["own_circuits"] == ["dbm"]
    own = data["tasks"]["ioi"]["own_circuits"]["dbm"]
    same = own["models"]["same"]
    assert same["heads"] == own["base"]["heads"] and own["base"]["k"] > 0
    assert same["retention"]["value"] == 1.0 and same["jaccard"]["value"] == 1.0
    assert same["mask_shift"]["mean_abs_c0"] == 0.0
    assert own["ceiling"] is not None  # the base found again on each half of the prompts
    assert {tuple(t["head"]) for t in own["heads_tested"]["same"]} == {tuple(h) for h in own["base"]["heads"]}
    bad = run_cli("audit", "--base", "embedded", "--tuned", "same=embedded", "--own-circuits", "bogus", "--out", "x")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --own-circuits: unknown discovery method 'bogus'")
