"""Options for each stage, as dataclasses with one docstring per field.

One config object flows through a run; the CLI fills these from its flags and
writes them beside the results (``dataclasses.asdict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PretrainConfig:
    """How the embedded base model is built (``forgetlens pretrain-base``)."""

    seed: int = 0
    """Seeds the corpus stream, the tokenizer corpus and the weight init."""
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
    """Context length; pretraining packs documents into rows of this many tokens."""
    steps: int = 3500
    """Optimizer steps."""
    batch_size: int = 12
    """Packed rows of ``max_len`` tokens per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (linear warm-up, cosine decay)."""
    warmup: int = 100
    """Warm-up steps."""
    weight_decay: float = 0.05
    """AdamW weight decay."""
    tokenizer_docs: int = 20000
    """Corpus documents used to train the tokenizer."""
    eval_examples: int = 400
    """Held-out examples per prior task for the model card's accuracy."""
    checkpoint_every: int = 500
    """Steps between resumable training-state snapshots."""
    threads: int = 2
    """torch CPU threads for pretraining (12 x 128 tokens is big enough to use both cores here)."""
    recipe: dict[str, float] = field(default_factory=lambda: {
        "induction": 0.25,
        "ioi": 0.18,
        "greater_than": 0.10,
        "fact_recall": 0.08,
        "capital_mcq": 0.12,
        "science_statement": 0.18,
        "science_mcq": 0.04,
        "reverse_fact": 0.05,
    })
    """Corpus mixture: source name -> share of documents (see ``models/corpus.py``)."""


@dataclass
class DiscoveryConfig:
    """How a base circuit is found (``forgetlens discover``)."""

    method: str = "attribution"
    """Per-head scoring: ``attribution`` (EAP), ``ig`` (EAP-IG) or ``exact`` (activation patching)."""
    metric: str = "logit_diff"
    """Task metric at the answer position: ``logit_diff`` or ``prob_diff``."""
    ablation: str = "counterfactual"
    """How heads outside a circuit are removed for faithfulness: ``counterfactual``, ``mean`` or ``zero``."""
    k: int | None = None
    """Circuit size; None picks the smallest k whose faithfulness reaches ``faithfulness_target``."""
    faithfulness_target: float = 0.8
    """Faithfulness a circuit must reach when ``k`` is None."""
    ig_steps: int = 8
    """Interpolation steps for ``ig``."""
    n_examples: int = 256
    """Prompts drawn from the task."""
    batch_size: int = 64
    """Prompts per forward pass."""
    seed: int = 0
    """Seeds the task prompts."""
