"""Building the embedded model: the corpus it was trained on is pinned, the format stage on top of stored
stage-2 weights equals a full run, and so does a build interrupted and resumed."""

import dataclasses
import hashlib
import random

import pytest
import torch
from safetensors.torch import load_file

from forgetlens.config import FormatStage, PretrainConfig
from forgetlens.errors import ForgetlensError
from forgetlens.models import corpus
from forgetlens.models.loading import default_device
from forgetlens.models.pretrain import pretrain_base

# SHA-256 of 300 documents of every corpus source as the shipped model's build drew them.  If this fails, the
# corpus changed, and `forgetlens pretrain-base` no longer rebuilds the shipped model: rebuild it (and its card)
# and update the digest, or restore the draws.
SHIPPED_CORPUS_DIGEST = "05145de5213e455b0fe7197747dd13385e5ca51a6cedb6463af27aa1da8fdc0c"


def test_corpus_sources_draw_the_documents_the_shipped_model_was_built_from():
    digest = hashlib.sha256()
    for name in sorted(corpus.SOURCES):
        rng = random.Random(f"corpus-pin:{name}")
        for _ in range(300):
            digest.update(corpus.SOURCES[name](rng).encode())
    assert digest.hexdigest() == SHIPPED_CORPUS_DIGEST


TINY = PretrainConfig(n_layers=1, n_heads=2, n_kv_heads=1, d_model=32, d_mlp=64, steps=4, curriculum_steps=2,
                      batch_size=4, warmup=2, tokenizer_docs=3000, eval_examples=4, checkpoint_every=2,
                      format_stages=[FormatStage(2, {"capital_mcq": 1.0}), FormatStage(2, {"science_mcq": 1.0})],
                      threads=1)


def test_format_stage_from_stored_stage_two_weights_equals_a_full_run(tmp_path):
    full = pretrain_base(TINY, tmp_path / "full", log=lambda *a: None)
    pretrain_base(dataclasses.replace(TINY, format_stages=[]), tmp_path / "stage2", log=lambda *a: None)
    pretrain_base(TINY, tmp_path / "continued", start_from=tmp_path / "stage2", log=lambda *a: None)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "continued" / "model.safetensors"))
    c = load_file(str(tmp_path / "stage2" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert any(not torch.equal(a[k], c[k]) for k in a), "the format stage changed nothing"
    assert {"capital_mcq", "science_mcq", "science_mcq/unit"} <= set(full["held_out_accuracy"])


def _interrupted_at(call: int, monkeypatch):
    """Make the ``call``-th optimizer step (1-based) raise, as a killed build would stop there."""
    from forgetlens.models import pretrain

    real_step, calls = pretrain._step, [0]

    def step(*args):
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(pretrain, "_step", step)


def test_an_interrupted_build_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """Snapshots every step: call 4 stops stage 2 at step 3, call 6 the format stage at step 1 (stage 2 has 4
    steps), each with a document stream half used; ``resume`` then has to continue each exactly."""
    cfg = dataclasses.replace(TINY, checkpoint_every=1)
    pretrain_base(cfg, tmp_path / "whole", log=lambda *a: None)
    reference = load_file(str(tmp_path / "whole" / "model.safetensors"))
    for call in (4, 6):
        out = tmp_path / f"stopped-at-{call}"
        with monkeypatch.context() as patch:
            _interrupted_at(call, patch)
            try:
                pretrain_base(cfg, out, log=lambda *a: None)
            except KeyboardInterrupt:
                pass
            else:
                raise AssertionError("the build was not interrupted")
        assert not (out / "model.safetensors").exists() and (out / "pretrain_state.pt").exists()
        messages = []
        card = pretrain_base(cfg, out, resume=True, log=messages.append)
        assert any("resuming" in m for m in messages), messages
        assert torch.device(card["train_device"]) == torch.device(default_device())
        resumed = load_file(str(out / "model.safetensors"))
        for key in reference:
            torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=0)
        assert not (out / "pretrain_state.pt").exists()


def test_a_bad_device_is_named_before_anything_is_written(tmp_path):
    with pytest.raises(ForgetlensError, match="PretrainConfig.device='gpu0' is not a torch device"):
        pretrain_base(dataclasses.replace(TINY, device="gpu0"), tmp_path / "out", log=lambda *a: None)
    assert not (tmp_path / "out").exists()
