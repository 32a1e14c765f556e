"""Tiny fixtures: the embedded tokenizer, small random models of the supported architectures, and one tiny study
built once for the whole session.

The tests live in lanes, one folder each: ``algorithms/`` (measures and algorithms against planted truth and slow
references), ``cli/`` (the commands in-process: options, errors, progress), ``report/`` (pages and results.json),
``e2e/`` (studies, runs, frontiers, faults and files from others, end to end; most read :func:`tiny_study`),
``models/`` (the embedded model and the real models from their wheels) and ``project/`` (the repository's own rules:
import layers, docs).  ``python -m pytest tests/algorithms`` runs one lane, ``-m "not slow"`` the fast lane."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import TINY_STUDY, make_tiny, run_cli

os.environ.setdefault("FORGETLENS_QUIET", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    from forgetlens.models.loading import EMBEDDED_DIR

    return AutoTokenizer.from_pretrained(str(EMBEDDED_DIR))


@pytest.fixture
def tiny_qwen2(tokenizer):
    return make_tiny("qwen2", len(tokenizer))


@pytest.fixture(scope="session")
def embedded():
    from forgetlens.models.loading import load_model

    return load_model("embedded")


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """A folder holding ``tiny.yaml`` (:data:`TINY_STUDY`) and ``study/``, the finished ``forgetlens run`` of it
    (``--jobs 1``), built once for the whole session, across pytest-xdist's workers too (the first to need it
    builds it under a lock; the others wait and read it).  Read it; copy it before changing anything."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' common folder
    root = shared / "tiny-study"
    fd = os.open(shared / "tiny-study.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not (root / "study" / "results.json").exists():
            shutil.rmtree(root, ignore_errors=True)  # a build that failed part-way: start again, not "exists"
            root.mkdir()
            (root / "tiny.yaml").write_text(TINY_STUDY)
            result = run_cli("run", "--config", str(root / "tiny.yaml"), "--out", str(root / "study"))
            assert result.returncode == 0, result.stderr
    finally:
        os.close(fd)
    return root
