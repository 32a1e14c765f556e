"""Differentiable binary masking checked against exact computation and planted circuits, and the own-circuit
comparisons (retention, null, ceiling) checked against what they must give by construction."""

import math

import numpy as np
import pytest
import torch
from helpers import make_tiny
from test_circuits import plant_circuit

from forgetlens.analysis.own_circuits import (
    compare_own_circuit,
    null_agreement,
    set_agreement,
    split_half_ceiling,
    summarise_method,
    vulnerable_heads,
)
from forgetlens.circuits.circuit import rank_heads
from forgetlens.circuits.dbm import (
    AllPositionsPatcher,
    LastTokenPatcher,
    flip_faithfulness,
    head_necessity_sufficiency,
    optimise_masks,
    target_logp,
)
from forgetlens.circuits.discover import discover_on
from forgetlens.circuits.patching import exact_head_effects, head_outputs
from forgetlens.config.options import DBMConfig, DiscoveryConfig
from forgetlens.models.forward import answer_logits
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import load_model
from forgetlens.tasks import encode_examples, get_task


def _batch(tokenizer, task, n, seed=0):
    return encode_examples(tokenizer, get_task(task).examples(n, seed), task)


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
@pytest.mark.parametrize("task", ["ioi", "induction"])
def test_last_token_fast_path_equals_the_full_forward(tokenizer, arch, task):
    """The cached last-token run (prompts of several lengths, re-aligned to the right) gives the right-padded full
    forward's logits unpatched, and the all-positions patcher's logits when the source differs from the clean run
    only at the last token."""
    model = make_tiny(arch, len(tokenizer), seed=1)
    layout = HeadLayout.of(model)
    batch = _batch(tokenizer, task, 10)
    assert len(set(batch.answer_pos.tolist())) > 1  # the re-alignment is exercised
    fast = LastTokenPatcher(model, layout, batch, "counterfactual", batch_size=4)
    rows = torch.arange(len(batch))
    weight = torch.rand(layout.n_layers, layout.n_heads, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = answer_logits(model, batch.clean_ids, batch.attention_mask, batch.answer_pos)
        assert torch.allclose(fast.logits(rows, None), clean, atol=1e-5)
        slow = AllPositionsPatcher(model, layout, batch, "counterfactual", batch_size=4)
        source = head_outputs(model, layout, batch)  # clean everywhere ...
        corrupted = head_outputs(model, layout, batch, corrupted=True)
        for i, pos in enumerate(batch.answer_pos.tolist()):
            source[:, i, pos] = corrupted[:, i, pos]  # ... but the last token
        slow.source = source.cpu()
        patched = fast.logits(rows, weight)
        assert torch.allclose(patched, slow.logits(rows, weight), atol=1e-5)
        assert (patched - clean).abs().max() > 1e-3  # the patch did something


@pytest.fixture(scope="module")
def planted(tokenizer):
    """The embedded model restricted to its 16 heads of largest exact IOI effect (every other head silenced); it
    still does IOI through them (checked), so they are a circuit planted in a working model."""
    loaded = load_model("embedded")
    model, layout = loaded.model, HeadLayout.of(loaded.model)
    batch = _batch(loaded.tokenizer, "ioi", 32)
    heads = rank_heads(exact_head_effects(model, layout, batch, metric="logit_diff").mean(0))[:16]
    plant_circuit(model, layout, heads, scale=1.0)
    return model, layout, batch, heads


@pytest.mark.slow
def test_dbm_recovers_a_planted_circuit(planted):
    model, layout, batch, heads = planted
    patcher = LastTokenPatcher(model, layout, batch, "counterfactual")
    rows = torch.arange(len(batch))
    with torch.no_grad():
        accuracy = float((patcher.logits(rows, None).argmax(-1) == batch.answer_ids).float().mean())
    assert accuracy > 0.9  # the planted model still does the task
    result = optimise_masks(patcher, DBMConfig(sparsity=0.002))
    outside = torch.ones(layout.n_layers, layout.n_heads, dtype=torch.bool)
    for h in heads:
        outside[h] = False
    assert result.heads and set(result.heads) <= set(heads)  # nothing outside the planted heads
    assert float(result.masks[outside].max()) < 1e-6  # silenced heads: only the sparsity term moves them
    assert flip_faithfulness(patcher, result.heads) > 0.95  # the circuit carries the counterfactual answer


def test_dbm_circuit_is_a_local_optimum_of_the_exact_objective(planted):
    """No single head added or removed lowers the exact (all prompts, binary masks) objective by more than a
    small tolerance: the relaxed, stochastic optimisation found a point of the discrete problem it stands for."""
    model, layout, batch, _ = planted
    cfg = DBMConfig(sparsity=0.01)
    patcher = LastTokenPatcher(model, layout, batch, "counterfactual")
    found = set(optimise_masks(patcher, cfg).heads)
    rows = torch.arange(len(batch))

    def objective(circuit: set) -> float:
        weight = torch.zeros(layout.n_layers, layout.n_heads)
        for h in circuit:
            weight[h] = 1.0
        with torch.no_grad():
            logp = target_logp(patcher.logits(rows, weight), batch, rows, "flip").mean()
        return -float(logp) + cfg.sparsity * len(circuit)

    at = objective(found)
    for layer in range(layout.n_layers):
        for head in range(layout.n_heads):
            assert objective(found ^ {(layer, head)}) > at - 0.02, (layer, head)


def test_dbm_masks_agree_with_exact_patching_on_which_heads_matter(embedded):
    """On the unmodified embedded model: the heads DBM keeps have larger exact single-head effects (each head alone
    patched at the last token) than the heads it drops, and the mask logits rank heads like those effects."""
    from scipy.stats import spearmanr

    model, layout = embedded.model, HeadLayout.of(embedded.model)
    batch = _batch(embedded.tokenizer, "greater_than", 32)
    patcher = LastTokenPatcher(model, layout, batch, "counterfactual")
    result = optimise_masks(patcher, DBMConfig(sparsity=0.002))
    rows = torch.arange(len(batch))
    effect = torch.zeros(layout.n_layers, layout.n_heads)
    with torch.no_grad():
        clean = target_logp(patcher.logits(rows, None), batch, rows, "flip").mean()
        for layer in range(layout.n_layers):
            for head in range(layout.n_heads):
                one = torch.zeros(layout.n_layers, layout.n_heads)
                one[layer, head] = 1.0
                effect[layer, head] = target_logp(patcher.logits(rows, one), batch, rows, "flip").mean() - clean
    inside = torch.zeros_like(effect, dtype=torch.bool)
    for h in result.heads:
        inside[h] = True
    assert effect[inside].mean() > effect[~inside].mean() + 0.1
    assert spearmanr(result.logits.flatten(), effect.flatten()).statistic > 0.3


def test_identical_models_give_retention_one_and_no_mask_shift(embedded):
    layout = HeadLayout.of(embedded.model)
    batch = _batch(embedded.tokenizer, "ioi", 16)
    cfg = DiscoveryConfig(method="dbm", n_examples=16, dbm=DBMConfig(steps=60))
    a, b = (discover_on(embedded.model, layout, batch, cfg) for _ in range(2))
    row = compare_own_circuit(a.heads, b.heads, layout.n_total, 200, 0, a.scores.numpy(), b.scores.numpy())
    assert row["retention"]["value"] == row["overlap"]["value"] == row["jaccard"]["value"] == 1.0
    assert row["mask_shift"]["mean_abs_all"] == 0.0
    assert a.dbm.forward_equivalents > 0 and a.curve[0]["k"] == a.k


def test_necessity_and_sufficiency_follow_their_definitions(planted):
    model, layout, batch, heads = planted
    patcher = LastTokenPatcher(model, layout, batch, "counterfactual")
    silent = next((l, h) for l in range(layout.n_layers) for h in range(layout.n_heads) if (l, h) not in heads)
    values = head_necessity_sufficiency(patcher, [heads[0], silent])
    assert values[silent]["necessity"] == pytest.approx(0.0, abs=1e-5)  # a silenced head is never needed
    assert values[silent]["sufficiency"] == pytest.approx(0.0, abs=1e-5)  # nor does it restore anything
    assert values[heads[0]]["necessity"] != pytest.approx(0.0, abs=1e-3)


def test_set_measures_null_and_ceiling():
    base = [(0, h) for h in range(10)]
    assert set_agreement(base, base[:5] + [(1, 0)]) == {"retention": 0.5, "overlap": 5 / 6, "jaccard": 5 / 11}
    # the null's mean is the hypergeometric expectation: k_other / n_total for retention
    null = null_agreement(100, 10, 30, 4000, seed=0)
    assert null["retention"].mean() == pytest.approx(0.30, abs=0.01)
    assert null["overlap"].mean() == pytest.approx(0.10, abs=0.005)
    row = compare_own_circuit(base, base, 100, 500, 0)
    assert row["retention"]["p_null"] == pytest.approx(1 / 501)  # no random set of 10 heads hits all 10
    random_set = [(1 + i // 10, i % 10) for i in range(10)]  # disjoint from base
    assert compare_own_circuit(base, random_set, 100, 500, 0)["retention"]["p_null"] == 1.0
    assert split_half_ceiling(base, base)["retention"] == 1.0
    assert split_half_ceiling(base, base[:5])["retention"] == pytest.approx(0.75)


def test_vulnerable_heads_rule_and_its_mirror():
    base = [(0, 0), (0, 1), (0, 2)]
    sft = np.array([[0.0, 1.0, 0.5]])
    rl = np.array([[1.0, 0.0, 0.55]])
    out = vulnerable_heads(base, sft, rl, delta=0.1)
    assert out == {"sft_below_rl": [[0, 0]], "rl_below_sft": [[0, 1]]}


def test_summary_over_seeds_pairs_methods_by_seed():
    def record(heads):
        scores = np.zeros((2, 4))
        for l, h in heads:
            scores[l, h] = 1.0
        return {"method": "dbm", "heads": [list(h) for h in heads], "scores": scores.tolist(), "faithfulness": 0.9}

    base = [(0, 0), (0, 1), (1, 0), (1, 1)]
    records = {"base": record(base), "base.half0": record(base[:3]), "base.half1": record(base[1:])}
    for s in (0, 1, 2):
        records[f"sft-s{s}@4"] = record(base[: 1 + (s % 2)])  # keeps 1 or 2 of 4
        records[f"rl-s{s}@4"] = record(base[:3])  # keeps 3 of 4
    out = summarise_method(records, 8, 200, 0.1, 0)
    assert out["groups"]["rl@4"]["retention"]["value"] == 0.75
    assert out["groups"]["sft@4"]["retention"]["per_seed"] == [0.25, 0.5, 0.25]
    dcv = out["dcv_paper"]["rl - sft"]["retention"]
    assert dcv["per_seed"] == [0.5, 0.25, 0.5] and dcv["ci_low"] < dcv["value"] < dcv["ci_high"]
    assert out["ceiling"]["retention"] == pytest.approx(2 / 3)
    assert out["vulnerable"]["sft vs rl"]["n_sft_below"]["per_seed"] == [2.0, 1.0, 2.0]
    assert out["vulnerable"]["sft vs rl"]["n_mirror"]["value"] == 0.0
    assert not math.isnan(out["groups"]["rl@4"]["retention"]["ci_low"])


OWN_STUDY = """
tasks: [ioi]
seeds: [0]
n_boot: 50
rl_from_sft: true
finetune:
  steps: 2
  checkpoint_every: 2
  prompts_per_step: 4
  prior_eval_examples: 8
  kl_samples: 1
  max_records: 40
  general_eval: false
  rl: {num_generations: 2}
discovery: {n_examples: 12, dbm: {steps: 30}}
own_circuits: {enabled: true, methods: [dbm, attribution], n_null: 100}
"""


@pytest.mark.slow
def test_a_study_continues_rl_from_sft_and_compares_every_models_circuit(tmp_path):
    """RL from SFT starts from the SFT run's last checkpoint (its weights are that run's, moved a little by RL,
    not the base's); every model's own circuit is compared with the base's; results and report carry both."""
    import json
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    from forgetlens.pipeline.results import schema_problems

    cfg = tmp_path / "own.yaml"
    cfg.write_text(OWN_STUDY)
    run = tmp_path / "run"
    env = {**os.environ, "FORGETLENS_QUIET": "1", "FORGETLENS_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "forgetlens", "run", "--config", str(cfg), "--out", str(run)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((run / "runs" / "sft-rl-s0" / "config.json").read_text())
    assert record["config"]["init_from"] == str(run / "runs" / "sft-s0")
    assert not (run / "runs" / "sft-rl-s0" / "checkpoints" / "checkpoint-0").exists()  # no copy of the start

    def weights(name: str) -> dict:
        return load_file(str(run / "runs" / name / "checkpoints" / "checkpoint-2" / "model.safetensors"))

    base = load_model("embedded").model.state_dict()
    chained, sft = weights("sft-rl-s0"), weights("sft-s0")
    to_sft = sum(float((chained[k] - sft[k]).norm()) for k in chained)
    to_base = sum(float((chained[k] - base[k]).norm()) for k in chained if k in base)
    assert to_sft < to_base
    results = json.loads((run / "results.json").read_text())
    assert schema_problems(results) == []
    own = results["tasks"]["ioi"]["own_circuits"]
    assert set(own) == {"dbm", "attribution"}
    assert set(own["dbm"]["groups"]) == {"sft@2", "rl@2", "sft-rl@2"}
    assert {"rl - sft", "sft-rl - sft", "sft-rl - rl"} <= set(own["dbm"]["dcv_paper"])
    behaviour = {n: json.loads((run / "runs" / n / "behaviour.json").read_text()) for n in ("sft-s0", "sft-rl-s0")}
    assert behaviour["sft-rl-s0"]["checkpoints"][0] == behaviour["sft-s0"]["checkpoints"][0]  # step 0: the base
    html = (run / "report.html").read_text()
    assert 'id="own_circuits"' in html and 'id="own_circuit_retention"' in html


@pytest.mark.slow
def test_discover_dbm_from_the_command_line(tmp_path):
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "d.json"
    env = {**os.environ, "FORGETLENS_QUIET": "1", "FORGETLENS_THREADS": "1"}
    cmd = [sys.executable, "-m", "forgetlens", "discover", "--task", "ioi", "--method", "dbm", "--n-examples", "16"]
    result = subprocess.run([*cmd, "--dbm-steps", "40", "--out", str(out)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["method"] == "dbm" and data["circuit"]["k"] == len(data["circuit"]["heads"]) > 0
    assert len(data["dbm"]["masks"]) == 4 and data["dbm"]["forward_equivalents"] > 0
    bad = subprocess.run([*cmd, "--dbm-sparsity", "-1", "--out", str(out)], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --dbm-sparsity:")


@pytest.mark.slow
def test_retention_sees_planted_damage_and_the_null_stays_below(planted):
    """Silencing some of a circuit's heads (a model with a known difference) removes exactly those heads from the
    damaged model's DBM circuit: its retention falls below 1, and stays above the mean of the random-set null."""
    import copy

    model, layout, batch, _ = planted
    cfg = DiscoveryConfig(method="dbm", n_examples=len(batch), dbm=DBMConfig(sparsity=0.002))
    before = discover_on(model, layout, batch, cfg)
    damaged_heads = before.heads[:2]
    damaged = copy.deepcopy(model)
    plant_circuit(
        damaged,
        layout,
        [h for h in ((l, x) for l in range(layout.n_layers) for x in range(layout.n_heads)) if h not in damaged_heads],
        scale=1.0,
    )
    after = discover_on(damaged, layout, batch, cfg)
    assert not set(damaged_heads) & set(after.heads)  # a silenced head cannot be in any circuit
    row = compare_own_circuit(before.heads, after.heads, layout.n_total, 500, 0)
    assert row["retention"]["value"] <= 1 - len(damaged_heads) / before.k
    assert row["retention"]["value"] > row["retention"]["null_mean"]


@pytest.mark.parametrize(
    "change, named",
    [
        ({"heads": [[0, 9]]}, "field 'heads' should list [layer, head] pairs"),
        ({"scores": [[0.0] * 4]}, "field 'scores' should be 2 x 4 numbers"),
        ({"k": "3"}, "field 'k' should be a int"),
        ({"faithfulness": "high"}, "field 'faithfulness' should be a number"),
    ],
)
def test_a_broken_own_circuit_record_is_one_error_naming_it(tmp_path, change, named):
    import json

    from forgetlens.errors import ForgetlensError
    from forgetlens.measure.own_circuits import read_own_record

    good = {"method": "dbm", "k": 1, "heads": [[1, 2]], "scores": [[0.0] * 4, [0.0] * 4], "faithfulness": None}
    path = tmp_path / "base.dbm.json"
    path.write_text(json.dumps(good))
    assert read_own_record(path, 2, 4)["heads"] == [[1, 2]]
    path.write_text(json.dumps({**good, **change}))
    with pytest.raises(ForgetlensError, match=named.replace("[", r"\[").replace("]", r"\]")) as error:
        read_own_record(path, 2, 4)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_the_heads_tested_with_an_own_circuit_are_the_base_dbm_circuits():
    """The base tests its own DBM heads (found in the same call), a tuned model the base's (read only then), a half
    of the prompts and other methods none; with necessity off, nothing."""
    from forgetlens.measure.own_circuits import heads_to_test

    read = []

    def base_heads():
        read.append(1)
        return [[3, 1], [0, 2]]

    assert heads_to_test("dbm", "all", True, True, base_heads) == (None, True)
    assert heads_to_test("dbm", "half0", True, True, base_heads) == (None, False)
    assert heads_to_test("attribution", "all", False, True, base_heads) == (None, False)
    assert heads_to_test("dbm", "all", False, False, base_heads) == (None, False)
    assert read == []
    assert heads_to_test("dbm", "all", False, True, base_heads) == ([(3, 1), (0, 2)], False)
    assert read == [1]
