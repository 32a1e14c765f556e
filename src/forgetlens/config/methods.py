"""The fine-tuning methods forgetlens trains, each declared once: which trainer runs it, which loss term it adds,
what its training rows hold and which learning-rate option it reads.

Everything that asks "is this SFT or RL?" or "which regulariser?" asks :func:`finetune_method`, never a run's
name.  Adding a method is an entry in :data:`METHODS` and its name in :data:`FinetuneMethod` (this file), plus
a regulariser in ``training/regularizers.py`` and an options section in ``config/options.py`` when it needs new
ones; ``rl-replay`` (RL with the replay term SFT's ``replay`` uses) was added with this file alone.

What a study or an audit compares model by model is declared too: a :class:`Comparison` ``FIRST:SECOND``
(``StudyConfig.comparisons``, ``AuditConfig.compare``), paired over models by ``analysis/runs.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from forgetlens.errors import ForgetlensError

FinetuneMethod = Literal["sft", "rl", "sft-preserve", "rl-preserve", "replay", "rl-replay", "sft-kl"]
"""Fine-tuning methods (``FinetuneConfig.method``, ``StudyConfig.methods``): the keys of :data:`METHODS`."""
FINETUNE_METHODS: tuple[str, ...] = get_args(FinetuneMethod)

Trainer = Literal["sft", "rl"]
"""``sft``: TRL's SFTTrainer on (prompt, answer) rows, loss on the answer; ``rl``: TRL's GRPOTrainer (Dr.GRPO by
default) on prompts alone, rewarded for a correct answer (``training/trainers.py``)."""
Regularizer = Literal["preserve", "replay", "kl_to_base"]
"""A loss term added to the trainer's (``training/regularizers.py``)."""


@dataclass(frozen=True)
class Method:
    """One fine-tuning method."""

    name: str
    """The name configs and run names use (``sft``, ``rl-preserve``)."""
    trainer: Trainer
    """Which trainer optimises it."""
    regularizer: Regularizer | None = None
    """The loss term it adds, if any; its options live in the section of the same purpose (``preserve``,
    ``replay``; ``kl_coef`` for ``kl_to_base``)."""
    summary: str = ""
    """What it is, in a few words, for help texts and docs."""

    @property
    def learning_rate_option(self) -> Literal["lr_sft", "lr_rl"]:
        """The ``FinetuneConfig`` field holding its learning rate."""
        return "lr_sft" if self.trainer == "sft" else "lr_rl"

    @property
    def trains_on_answers(self) -> bool:
        """Whether its training rows carry the reference answer (SFT) or the prompt alone (RL samples its own)."""
        return self.trainer == "sft"


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("sft", "sft", summary="supervised fine-tuning on the target's answers"),
        Method("rl", "rl", summary="Dr.GRPO with a correctness reward"),
        Method("sft-preserve", "sft", "preserve", "SFT plus circuit preservation"),
        Method("rl-preserve", "rl", "preserve", "RL plus circuit preservation"),
        Method("replay", "sft", "replay", "SFT plus replay of prior-task documents"),
        Method("rl-replay", "rl", "replay", "RL plus replay of prior-task documents"),
        Method("sft-kl", "sft", "kl_to_base", "SFT plus KL(base || tuned) on its answers"),
    )
}
"""Every method, by name."""

if tuple(METHODS) != FINETUNE_METHODS:  # the Literal (for type checkers) and the registry name the same methods
    raise AssertionError(f"FinetuneMethod {FINETUNE_METHODS} and METHODS {tuple(METHODS)} differ")


def finetune_method(name: str) -> Method:
    """The method called ``name``; an unknown name is one line naming the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ForgetlensError(
            f"unknown fine-tuning method {name!r}; expected one of {', '.join(FINETUNE_METHODS)}"
        ) from None


@dataclass(frozen=True)
class Comparison:
    """Two fine-tuning methods compared model by model (DCV and the paired behaviour tests): every model of
    ``first`` with the model of ``second`` of the same seed, rate and step (``analysis.runs.compared_pairs``).
    Written ``FIRST:SECOND`` in configs and on the command line."""

    first: str
    """The method whose models head each pair (DCV: its circuit damage minus the second's)."""
    second: str
    """The method each is compared with."""

    def __str__(self) -> str:
        return f"{self.first}:{self.second}"

    @classmethod
    def parse(cls, text: str) -> Comparison:
        """``FIRST:SECOND``; ValueError unless both are named and differ."""
        first, sep, second = text.partition(":")
        if not (first and sep and second) or first == second or ":" in second:
            raise ValueError(f"expected FIRST:SECOND, two different methods, got {text!r}")
        return cls(first, second)


DEFAULT_COMPARISON = Comparison("sft", "rl")
"""What a study or an audit compares unless told otherwise: SFT against RL, the paper's question."""
