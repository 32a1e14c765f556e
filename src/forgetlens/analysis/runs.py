"""A fine-tuning run's identity and a tuned model's label: written in one place, read back in one place.

A run is named ``[CHAIN-]METHOD[-lrLR][-sSEED]``:

* ``sft-s0``: method ``sft``, seed 0 (every method of ``StudyConfig.methods`` runs once per seed);
* ``sft-lr1e-05-s0``: the SFT learning-rate grid (``StudyConfig.sft_lr_grid``) at rate 1e-05;
* ``sft-rl-s0``: RL trained from the last checkpoint of ``sft-s0`` (``StudyConfig.rl_from_sft``).

A tuned model is labelled ``RUN@STEP`` (a checkpoint) or ``RUN@acc:F`` / ``RUN@kl:F`` (a matched-level
pseudo-model, ``analysis/matched.py``).  Labels given by a person (``forgetlens audit --tuned sft=DIR``) parse too:
whatever does not follow the grammar is the method, so ``sft`` and ``rl`` are runs without a seed.

What DCV and the paired tests compare is declared, not guessed from names: a :class:`Comparison` ``FIRST:SECOND``
(``StudyConfig.comparisons``, ``AuditConfig.compare``; ``sft:rl`` by default) pairs every model of method ``FIRST``
with the model of method ``SECOND`` and everything else equal (``sft-s1@40`` with ``rl-s1@40``).  A pair is keyed by
the first label without its method (``-s1@40``; ``""`` for ``sft``/``rl``), preceded by ``FIRST:SECOND:`` for any
comparison but ``sft:rl`` (``sft-preserve:rl-preserve:-s0@12``): the key results.json uses.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from forgetlens.config.methods import DEFAULT_COMPARISON, Comparison

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
    def without_method(self) -> ModelLabel:
        """The same label with the run's method dropped (``sft-s1@40`` -> ``-s1@40``): what two compared models
        share."""
        return dataclasses.replace(self, run=dataclasses.replace(self.run, method=""))


def partner(label: ModelLabel, comparison: Comparison) -> ModelLabel | None:
    """The model ``label`` is compared with under ``comparison``, if it is one of the first method's (a run that
    continues another, ``sft-rl``, is in no pair); else None."""
    run = label.run
    if run.chain is not None or run.method != comparison.first:
        return None
    return dataclasses.replace(label, run=dataclasses.replace(run, method=comparison.second))


def pair_key(label: ModelLabel, comparison: Comparison) -> str:
    """The key of the pair ``label`` (one of the first method's models) heads under ``comparison``."""
    rest = str(label.without_method)
    return rest if comparison == DEFAULT_COMPARISON else f"{comparison}:{rest}"


def compared_pairs(labels: list[str], comparisons: Sequence[Comparison]) -> dict[str, tuple[str, str]]:
    """{pair key: (first label, second label)} for every model of a comparison's first method whose partner is
    among ``labels``, over every comparison."""
    names = set(labels)
    out = {}
    for comparison in comparisons:
        for label in labels:
            parsed = ModelLabel.parse(label)
            other = partner(parsed, comparison)
            if other is not None and str(other) in names:
                out[pair_key(parsed, comparison)] = (label, str(other))
    return out


def _split_pair_key(key: str) -> tuple[Comparison, str]:
    """A DCV pair key as (its comparison, the first label without its method): ``-s0@12`` -> (sft:rl, ``-s0@12``);
    ``replay:rl:-s0@12`` -> (replay:rl, ``-s0@12``).  A label without its method starts with ``-`` or ``@`` (or
    is empty), so a key starting otherwise names its comparison first."""
    if key and key[0] not in "-@":
        first, second, rest = key.split(":", 2)
        return Comparison(first, second), rest
    return DEFAULT_COMPARISON, key


def pair_comparison(key: str) -> Comparison:
    """The comparison whose pair ``key`` is (``-s0@12`` -> ``sft:rl``; ``replay:rl:-s0@12`` -> ``replay:rl``)."""
    return _split_pair_key(key)[0]


def starts_from(name: str) -> str | None:
    """The run whose last checkpoint run ``name`` trains from (``sft-rl-sSEED`` -> ``sft-sSEED``), or None."""
    start = RunId.parse(name).start
    return None if start is None else str(start)


def checkpoint_label(run: str, step: int) -> str:
    """``RUN@STEP``: the label of run ``run``'s checkpoint at ``step``."""
    return str(ModelLabel(RunId.parse(run), step=step))


def pair_label(key: str) -> ModelLabel:
    """A DCV pair key read as a label whose method is empty (``-s1@40`` and ``replay:rl:-s1@40`` -> seed 1, step
    40)."""
    return ModelLabel.parse(_split_pair_key(key)[1])
