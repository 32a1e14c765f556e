"""A fine-tuning run's identity and a tuned model's label: written in one place, read back in one place.

A run is named ``[CHAIN-]METHOD[-lrLR][-sSEED]``:

* ``sft-s0``: method ``sft``, seed 0 (every method of ``StudyConfig.methods`` runs once per seed);
* ``sft-lr1e-05-s0``: the SFT learning-rate grid (``StudyConfig.sft_lr_grid``) at rate 1e-05;
* ``sft-rl-s0``: RL trained from the last checkpoint of ``sft-s0`` (``StudyConfig.rl_from_sft``).

A tuned model is labelled ``RUN@STEP`` (a checkpoint) or ``RUN@acc:F`` / ``RUN@kl:F`` (a matched-level
pseudo-model, ``analysis/matched.py``).  Labels given by a person (``forgetlens audit --tuned sft=DIR``) parse too:
whatever does not follow the grammar is the method, so ``sft`` and ``rl`` are runs without a seed.

DCV compares every model whose method starts with ``sft`` with the model whose method is the same with ``rl`` in
its place and everything else equal (``sft-s1@40`` with ``rl-s1@40``, ``sft-preserve-s0@12`` with
``rl-preserve-s0@12``).  The pair is keyed by the SFT label without its leading ``sft`` (``-s1@40``; ``""`` for
``sft``/``rl``), the key results.json uses.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

_RUN = re.compile(
    r"^(?:(?P<chain>sft)-(?=rl(?:-|$)))?(?P<method>.*?)(?:-lr(?P<lr>\d[\d.]*(?:e[+-]?\d+)?))?(?:-s(?P<seed>\d+))?$"
)
_SUFFIX = re.compile(r"^(?:(?P<step>\d+)|(?P<level>(?:acc|kl):[0-9.e+-]+))$")


@dataclass(frozen=True)
class RunId:
    """One fine-tuning run."""

    method: str
    """The fine-tuning method (``sft``, ``rl``, ``sft-preserve``, ...), or the name a person gave a tuned model."""
    seed: int | None = None
    """The run's seed; None for a model that is not one of several seeds."""
    lr: float | None = None
    """The learning rate of a learning-rate-grid run; None for a run at its config's rate."""
    chain: str | None = None
    """The method whose run this one continues from its last checkpoint (``sft`` for RL from SFT), or None."""

    def __str__(self) -> str:
        parts = [p for p in (self.chain, self.method) if p]
        if self.lr is not None:
            parts.append(f"lr{self.lr:g}")
        if self.seed is not None:
            parts.append(f"s{self.seed}")
        return "-".join(parts) if self.method else "".join(f"-{p}" for p in parts)

    @classmethod
    def parse(cls, name: str) -> RunId:
        """The run named ``name``; a name outside the grammar is all method."""
        m = _RUN.match(name)
        if m is None:
            return cls(method=name)
        run = cls(
            method=m["method"],
            seed=int(m["seed"]) if m["seed"] is not None else None,
            lr=float(m["lr"]) if m["lr"] is not None else None,
            chain=m["chain"],
        )
        return run if str(run) == name else cls(method=name)

    @property
    def group(self) -> str:
        """The name without the seed: what seeds are averaged over (``sft-lr1e-05``, ``sft-rl``)."""
        return str(dataclasses.replace(self, seed=None))

    @property
    def start(self) -> RunId | None:
        """The run whose last checkpoint this one starts from (``sft-rl-s0`` -> ``sft-s0``), or None."""
        return None if self.chain is None else RunId(method=self.chain, seed=self.seed)

    @property
    def rl_counterpart(self) -> RunId | None:
        """The RL run DCV compares this SFT run with (``sft-s0`` -> ``rl-s0``); None if this is not an SFT run."""
        if self.chain is not None or not self.method.startswith("sft"):
            return None
        return dataclasses.replace(self, method="rl" + self.method.removeprefix("sft"))


@dataclass(frozen=True)
class ModelLabel:
    """One tuned model of a study or an audit: a run's checkpoint or a matched-level pseudo-model."""

    run: RunId
    """The run the model comes from."""
    step: int | None = None
    """The checkpoint's optimizer step; None for a whole model given by a person, or a matched-level model."""
    level: str | None = None
    """A matched-level pseudo-model's level (``acc:0.5``, ``kl:0.25``), or None."""

    def __str__(self) -> str:
        suffix = f"@{self.step}" if self.step is not None else f"@{self.level}" if self.level is not None else ""
        return f"{self.run}{suffix}"

    @classmethod
    def parse(cls, label: str) -> ModelLabel:
        """The model labelled ``label`` (``RUN``, ``RUN@STEP`` or ``RUN@acc:F``)."""
        name, at, suffix = label.rpartition("@")
        m = _SUFFIX.match(suffix) if at else None
        if m is None:
            return cls(run=RunId.parse(label))
        step = int(m["step"]) if m["step"] is not None else None
        parsed = cls(run=RunId.parse(name), step=step, level=m["level"])
        return parsed if str(parsed) == label else cls(run=RunId.parse(label))

    @property
    def without_seed(self) -> ModelLabel:
        """The same label with the run's seed dropped: the group seeds are averaged over (``sft@40``)."""
        return dataclasses.replace(self, run=dataclasses.replace(self.run, seed=None))

    @property
    def rl_counterpart(self) -> ModelLabel | None:
        """The RL model DCV compares this SFT model with, or None."""
        rl = self.run.rl_counterpart
        return None if rl is None else dataclasses.replace(self, run=rl)

    @property
    def pair_key(self) -> str:
        """The key of the SFT/RL pair this SFT model heads: its label without the leading ``sft``."""
        return str(self).removeprefix("sft")


def starts_from(name: str) -> str | None:
    """The run whose last checkpoint run ``name`` trains from (``sft-rl-sSEED`` -> ``sft-sSEED``), or None."""
    start = RunId.parse(name).start
    return None if start is None else str(start)


def checkpoint_label(run: str, step: int) -> str:
    """``RUN@STEP``: the label of run ``run``'s checkpoint at ``step``."""
    return str(ModelLabel(RunId.parse(run), step=step))


def dcv_pairs(labels: list[str]) -> dict[str, tuple[str, str]]:
    """{pair key: (SFT label, RL label)} for every SFT model whose RL counterpart is among ``labels``.

    ``sft``/``rl`` -> pair ``""``; ``sft@40``/``rl@40`` -> ``"@40"``; ``sft-s1@40``/``rl-s1@40`` -> ``"-s1@40"``.
    """
    names = set(labels)
    out = {}
    for label in labels:
        parsed = ModelLabel.parse(label)
        rl = parsed.rl_counterpart
        if rl is not None and str(rl) in names:
            out[parsed.pair_key] = (label, str(rl))
    return out


def pair_label(key: str) -> ModelLabel:
    """A DCV pair key read as a label whose method is empty (``-s1@40`` -> seed 1, step 40)."""
    return ModelLabel.parse(key)
