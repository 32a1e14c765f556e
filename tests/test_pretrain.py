"""Building the embedded model: the corpus it was trained on is pinned, and the format stage on top of stored
stage-2 weights equals a full run."""

import dataclasses
import hashlib
import random

import torch
from safetensors.torch import load_file

from forgetlens.config import FormatStage, PretrainConfig
from forgetlens.models import corpus
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
