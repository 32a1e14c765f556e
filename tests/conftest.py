"""Tiny fixtures: the embedded tokenizer and small random models of the supported architectures."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("FORGETLENS_QUIET", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    from forgetlens.models.loading import EMBEDDED_DIR

    return AutoTokenizer.from_pretrained(str(EMBEDDED_DIR))


def make_tiny(arch: str, vocab_size: int, seed: int = 0, layers: int = 2, heads: int = 4):
    """A random tiny causal LM of ``arch`` (qwen2 with GQA, llama, gpt2, gemma3)."""
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    torch.manual_seed(seed)
    if arch == "qwen2":
        cfg = Qwen2Config(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads // 2,
            max_position_embeddings=512,  # rotary: a config limit only; real Qwen2 models cover 32k
        )
        model = Qwen2ForCausalLM(cfg)
    elif arch == "llama":
        cfg = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=512,
        )
        model = LlamaForCausalLM(cfg)
    elif arch == "gemma3":  # Gemma 3's shape in small: one key/value head, head_dim * heads != width, norms
        cfg = Gemma3TextConfig(  # after attention and MLP, sliding-window layers
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=1,
            head_dim=32,
            sliding_window=8,
            max_position_embeddings=512,
        )
        model = Gemma3ForCausalLM(cfg)
    elif arch == "gpt2":
        cfg = GPT2Config(vocab_size=vocab_size, n_embd=64, n_layer=layers, n_head=heads, n_positions=128)
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(arch)
    return model.eval()


@pytest.fixture
def tiny_qwen2(tokenizer):
    return make_tiny("qwen2", len(tokenizer))


@pytest.fixture(scope="session")
def embedded():
    from forgetlens.models.loading import load_model

    return load_model("embedded")


def run_cli(*args: str, cwd=None, env: dict | None = None):
    """``forgetlens ARGS`` in this process through ``cli.main`` (exit status, stdout and stderr as a
    ``subprocess.CompletedProcess``): the CLI's error paths without a 10-second interpreter start each.  The
    environment, working directory and warning filters the CLI changes are put back afterwards."""
    import contextlib
    import io
    import subprocess
    import warnings

    from forgetlens import cli

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.environ.update({"FORGETLENS_QUIET": "1", **(env or {})})
        if cwd is not None:
            os.chdir(cwd)
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["forgetlens", *args], code, out.getvalue(), err.getvalue())
