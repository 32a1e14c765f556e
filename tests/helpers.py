"""Helpers the test lanes share (fixtures live in ``conftest.py``): tiny random models, the CLI in-process, the
shared tiny study's config, one-line-error checks and input records, a local lm-eval task, headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent
LOCAL_TASKS = TESTS / "data" / "lm-eval-tasks"


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


TINY_STUDY = """
tasks: [ioi]
seeds: [0]
n_boot: 100
finetune:
  steps: 4
  checkpoint_every: 2
  prompts_per_step: 4
  prior_eval_examples: 16
  kl_samples: 1
  max_records: 40
  general_eval: true
  chat_kl_tokens: 4
  rl: {num_generations: 2}
discovery: {n_examples: 16}
"""
"""The shared tiny study's config: the embedded model, SFT and RL of seed 0 for 4 steps, the IOI circuit."""


GOOD_RECORD = {
    "type": "mcq-4-choices",
    "question": "Which is a noble gas?",
    "choices": {"text": ["neon", "iron", "salt", "wood"], "label": ["A", "B", "C", "D"]},
    "answerKey": "A",
}


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit 2, no traceback, exactly one ``error:`` line holding every needle."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def jsonl(path: Path, *records: dict) -> Path:
    """``records`` written to ``path`` as JSON lines."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def records(n: int, **change) -> list[dict]:
    """``n`` valid multiple-choice records, each with ``change`` applied."""
    return [{**GOOD_RECORD, "question": f"Question {i}: which is a noble gas?", **change} for i in range(n)]


def local_task_dir(tmp_path: Path) -> Path:
    """The test task YAML with its data file given as an absolute path (lm-eval resolves relative ones from cwd)."""
    text = (LOCAL_TASKS / "capitals_local.yaml").read_text()
    (tmp_path / "capitals_local.yaml").write_text(
        text.replace("test: capitals_local.jsonl", f"test: {LOCAL_TASKS / 'capitals_local.jsonl'}")
    )
    return tmp_path


def chromium() -> str:
    """Headless Chromium's path; the test fails where CI installed it (``FORGETLENS_REQUIRE_BROWSER``), else skips."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("FORGETLENS_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return found


def chromium_flags(profile: Path) -> list[str]:
    """Chromium's flags for one headless, offline page load with its own profile folder."""
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
    ]


def probe_in_chromium(page: str, probe: str, probe_id: str, folder: Path, budget_ms: int) -> tuple[object, str]:
    """Open ``page`` (HTML) in headless Chromium with the ``probe`` script added before ``</body>``; the probe writes
    JSON into ``<pre id=PROBE_ID>`` once the page has loaded. Returns (that JSON, read back; the whole DOM)."""
    browser = chromium()
    path = folder / "probe.html"
    path.write_text(page.replace("</body>", probe + "</body>"))
    dom = subprocess.run(
        [
            browser,
            *chromium_flags(folder / "profile"),
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(rf'<pre id="{re.escape(probe_id)}">(.*?)</pre>', dom, re.S)
    assert found, f"the probe wrote nothing: {dom[-500:]}"
    return json.loads(found.group(1).replace("&quot;", '"')), dom
