"""Options of the embedded model's build (``forgetlens pretrain-base``), one docstring per field."""

from __future__ import annotations

from dataclasses import dataclass, field

from forgetlens.config.options import Options

HEAD_SPARSITY = 1.5e-4
"""The shipped model's head-sparsity penalty, the same in every stage (``FormatStage.head_sparsity``).  Without it
see docs/embedded-model.md for how it was chosen."""


@dataclass
class FormatStage:
    """One sub-stage of the embedded model's answer-format stage."""

    steps: int
    """Optimizer steps."""
    recipe: dict[str, float]
    """Corpus mixture: source name -> share of documents."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing in this sub-stage (0: plain next-token loss).  It bounds how far the model
    drives its logit margins; on the embedded model's stage 4 it did not make attribution agree reliably better
    with exact patching (docs/results/archive/embedded-model-history.md), so the shipped recipe does not use it."""
    head_sparsity: float = 0.0
    """Weight of an L1 penalty on the heads' contributions to the residual stream in this sub-stage: the mean over
    labelled tokens of the sum over layers and heads of |W_O,h z_h|_2 (0: none).  It pushes each task onto fewer
    heads; too strong, it also erodes multiple choice and IOI, and whether multiple choice forms varies from build
    to build (docs/results/archive/embedded-model-history.md)."""


@dataclass
class PretrainConfig(Options):
    """How the embedded base model is built (``forgetlens pretrain-base``; its flags are made from these fields)."""

    seed: int = 1
    """Seeds the corpus stream, the tokenizer corpus and the weight init (the shipped model: 1; why,
    docs/embedded-model.md)."""
    vocab_size: int = 1024
    """Byte-level BPE vocabulary size (incl. 256 byte tokens and 3 special tokens)."""
    n_layers: int = 4
    """Transformer blocks."""
    n_heads: int = 8
    """Query heads per block."""
    n_kv_heads: int = 4
    """Key/value heads per block (grouped-query attention, as in Qwen2)."""
    d_model: int = 128
    """Residual stream width; d_head = d_model / n_heads."""
    d_mlp: int = 256
    """MLP hidden width."""
    max_len: int = 128
    """Context length the model is built for (documents are truncated to it)."""
    steps: int = 6500
    """Optimizer steps in all (curriculum included)."""
    batch_size: int = 64
    """Documents per step (grouped by length to limit padding)."""
    lr: float = 3e-3
    """Peak AdamW learning rate (linear warm-up, cosine decay)."""
    warmup: int = 100
    """Warm-up steps."""
    weight_decay: float = 0.05
    """AdamW weight decay."""
    head_sparsity: float = HEAD_SPARSITY
    """Stages 1-2: weight of the L1 penalty on the heads' residual contributions (as ``FormatStage.head_sparsity``,
    which sets it for the later stages; 0: none)."""
    tokenizer_docs: int = 20000
    """Corpus documents used to train the tokenizer."""
    eval_examples: int = 400
    """Held-out examples per prior task for the model card's accuracy."""
    checkpoint_every: int = 500
    """Steps between resumable training-state snapshots."""
    threads: int = 1
    """torch CPU threads for pretraining.  The thread count changes floating-point sums, so the shipped model is
    rebuilt bit for bit only with the count it was built with (1)."""
    device: str | None = None
    """Where to train: ``None`` follows ``$FORGETLENS_DEVICE``, else the GPU, else the CPU (as model loading does).
    The shipped model was built on the CPU; a GPU build draws the same corpus but need not give the same weights."""
    curriculum_steps: int = 1000
    """Steps at the start that draw from ``curriculum_recipe`` instead of ``recipe``."""
    curriculum_recipe: dict[str, float] = field(default_factory=lambda: {"induction": 1.0})
    """Opening mixture, before the mixed corpus (why a curriculum: docs/embedded-model.md).  The ``induction``
    source repeats from the first word, which a copying shortcut answers; ``induction_span`` repeats from a random
    word."""
    recipe: dict[str, float] = field(
        default_factory=lambda: {
            "induction": 0.20,
            "ioi": 0.15,
            "greater_than": 0.10,
            "fact_recall": 0.08,
            "capital_mcq": 0.17,
            "science_statement": 0.20,
            "science_mcq": 0.05,
            "reverse_fact": 0.05,
        }
    )
    """Corpus mixture: source name -> share of documents (see ``embedded_build/corpus.py``)."""
    format_lr: float = 1e-3
    """Learning rate of the format stages (after ``warmup`` steps of linear warm-up, then constant)."""
    format_stages: list[FormatStage] = field(
        default_factory=lambda: [
            FormatStage(500, {"capital_mcq": 1.0}, head_sparsity=HEAD_SPARSITY),
            FormatStage(500, {"science_mcq": 0.8, "capital_mcq": 0.2}, head_sparsity=HEAD_SPARSITY),
            FormatStage(
                800,
                {
                    "induction": 0.2,
                    "ioi": 0.2,
                    "greater_than": 0.15,
                    "fact_recall": 0.1,
                    "science_statement": 0.1,
                    "reverse_fact": 0.05,
                    "capital_mcq": 0.15,
                    "science_mcq": 0.05,
                },
                head_sparsity=HEAD_SPARSITY,
            ),
        ]
    )
    """Stage 3, after ``steps``: answer-format practice, one fresh optimizer for all its sub-stages: capital-city
    questions, then mostly science questions, then a mixed sub-stage that restores the prior tasks (why:
    docs/embedded-model.md)."""

    compare_stage: FormatStage | None = field(
        default_factory=lambda: FormatStage(
            800,
            {
                "induction": 0.1,
                "ioi": 0.1,
                "greater_than": 0.075,
                "fact_recall": 0.05,
                "science_statement": 0.05,
                "reverse_fact": 0.025,
                "capital_mcq": 0.075,
                "science_mcq": 0.025,
                "compare_mcq": 0.5,
            },
            head_sparsity=HEAD_SPARSITY,
        )
    )
    """Stage 4: the format stage's final mixture at half its shares plus comparison questions from the pretraining
    half (``targets/comparisons.py``), with a fresh optimizer at ``format_lr``; ``None`` skips it.  The default target
    asks about the other half (docs/embedded-model.md)."""

    @property
    def format_steps(self) -> int:
        return sum(stage.steps for stage in self.format_stages)

    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with these options, one line each."""
        out = [
            f"{prefix}{name}: expected a positive integer, got {getattr(self, name)}"
            for name in ("steps", "batch_size", "vocab_size", "n_layers", "n_heads", "n_kv_heads", "d_model", "threads")
            if getattr(self, name) <= 0
        ]
        if self.n_heads > 0 and self.n_kv_heads > 0 and self.n_heads % self.n_kv_heads:
            out.append(f"{prefix}n_kv_heads: must divide n_heads ({self.n_heads}), got {self.n_kv_heads}")
        if self.n_heads > 0 and self.d_model % self.n_heads:
            out.append(f"{prefix}d_model: must be a multiple of n_heads ({self.n_heads}), got {self.d_model}")
        return out
