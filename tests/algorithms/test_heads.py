"""Per-head hooks checked against a manual computation of each head's output."""

import math

import pytest
import torch
from helpers import make_tiny

from forgetlens.errors import ForgetlensError
from forgetlens.models.heads import HeadLayout, capture_heads


@pytest.mark.parametrize("arch,expected", [("qwen2", (2, 4, 16)), ("llama", (2, 4, 16)), ("gpt2", (2, 4, 16))])
def test_layout(tokenizer, arch, expected):
    layout = HeadLayout.of(make_tiny(arch, len(tokenizer)))
    assert (layout.n_layers, layout.n_heads, layout.d_head) == expected
    assert layout.architecture == arch


def test_unsupported_architecture_names_it():
    from transformers import OPTConfig, OPTForCausalLM

    model = OPTForCausalLM(
        OPTConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            ffn_dim=32,
            max_position_embeddings=32,
            word_embed_proj_dim=16,
        )
    )
    with pytest.raises(ForgetlensError, match="unsupported architecture 'opt'"):
        HeadLayout.of(model)


def _layer_inputs(model, blocks, ids):
    """Hidden states entering each block on a forward pass over ``ids``."""
    inputs = []
    handles = [
        b.register_forward_pre_hook(
            lambda m, a, k: inputs.append(k.get("hidden_states", a[0] if a else None)), with_kwargs=True
        )
        for b in blocks
    ]
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return inputs


def manual_heads_rope(model, ids):
    """Qwen2/Llama per-head outputs from the weights: RMSNorm, projections, RoPE, GQA, causal softmax."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    blocks = model.model.layers
    inputs = _layer_inputs(model, blocks, ids)
    cfg = model.config
    n, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    b, p = ids.shape
    pos = torch.arange(p).unsqueeze(0)
    outs = []
    with torch.no_grad():
        for block, x in zip(blocks, inputs):
            attn = block.self_attn
            h = block.input_layernorm(x)
            q = attn.q_proj(h).view(b, p, n, d).transpose(1, 2)
            k = attn.k_proj(h).view(b, p, kv, d).transpose(1, 2)
            v = attn.v_proj(h).view(b, p, kv, d).transpose(1, 2)
            cos, sin = model.model.rotary_emb(x, pos)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k, v = k.repeat_interleave(n // kv, dim=1), v.repeat_interleave(n // kv, dim=1)
            scores = q @ k.transpose(-1, -2) / math.sqrt(d)
            scores = scores.masked_fill(torch.ones(p, p, dtype=torch.bool).triu(1), float("-inf"))
            outs.append((scores.softmax(-1) @ v).transpose(1, 2))  # [batch, pos, head, d_head]
    return outs


def manual_heads_gpt2(model, ids):
    blocks = model.transformer.h
    inputs = _layer_inputs(model, blocks, ids)
    n = model.config.n_head
    b, p = ids.shape
    outs = []
    with torch.no_grad():
        for block, x in zip(blocks, inputs):
            q, k, v = block.attn.c_attn(block.ln_1(x)).split(model.config.n_embd, dim=-1)
            q, k, v = (t.view(b, p, n, -1).transpose(1, 2) for t in (q, k, v))
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            scores = scores.masked_fill(torch.ones(p, p, dtype=torch.bool).triu(1), float("-inf"))
            outs.append((scores.softmax(-1) @ v).transpose(1, 2))
    return outs


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
def test_hooked_head_outputs_match_manual_computation(tokenizer, arch):
    model = make_tiny(arch, len(tokenizer), seed=5)
    layout = HeadLayout.of(model)
    ids = torch.randint(0, len(tokenizer), (3, 11))
    with torch.no_grad(), capture_heads(model, layout) as captured:
        model(input_ids=ids)
    manual = manual_heads_gpt2(model, ids) if arch == "gpt2" else manual_heads_rope(model, ids)
    assert len(captured) == layout.n_layers
    for z, ref in zip(captured, manual):
        assert torch.allclose(layout.split(z), ref, atol=1e-5)


def test_default_device_follows_forgetlens_device_and_names_a_bad_one(monkeypatch):
    from forgetlens.models.loading import default_device, load_model

    monkeypatch.setenv("FORGETLENS_DEVICE", "cpu")
    assert default_device() == "cpu"
    assert load_model("embedded").model.device.type == "cpu"
    monkeypatch.setenv("FORGETLENS_DEVICE", "gpu0")
    with pytest.raises(ForgetlensError, match="FORGETLENS_DEVICE='gpu0' is not a torch device"):
        default_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("FORGETLENS_DEVICE", "cuda")
        with pytest.raises(ForgetlensError, match="torch sees no CUDA device"):
            default_device()
    monkeypatch.delenv("FORGETLENS_DEVICE")
    assert default_device() == ("cuda:0" if torch.cuda.is_available() else "cpu")
