"""Options for each stage, as dataclasses with one docstring per field.

One config object flows through a run; the CLI fills these from its flags and
writes them beside the results (``dataclasses.asdict``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

from forgetlens.config.methods import (
    DEFAULT_COMPARISON,
    FINETUNE_METHODS,
    METHODS,
    Comparison,
    FinetuneMethod,
    finetune_method,
)
from forgetlens.utils import short_repr

MAIN_JOB_CONFIG = Path(__file__).parent / "presets" / "smollm2-135m-quick.yaml"
"""The main job's study (``forgetlens run`` without ``--config``; ``configs/smollm2-135m-quick.yaml`` in the
repository): SFT and RL on SmolLM2-135M-Instruct, one seed, 12 steps."""

DiscoveryMethod = Literal["attribution", "exact", "ig", "dbm"]
"""How a circuit is found (``DiscoveryConfig.method``): heads scored one by one (attribution, exact patching,
integrated gradients) or one mask per head optimised jointly (differentiable binary masking)."""
DISCOVERY_METHODS: tuple[str, ...] = get_args(DiscoveryMethod)
ScoringMethod = Literal["attribution", "exact", "ig"]
"""The methods that give every head a patching effect (what checkpoints' per-head measurements use)."""
SCORING_METHODS: tuple[str, ...] = get_args(ScoringMethod)
DBMObjective = Literal["flip", "keep"]
"""What differentiable binary masking optimises (``DBMConfig.objective``)."""
DBM_OBJECTIVES: tuple[str, ...] = get_args(DBMObjective)
DBMPositions = Literal["last", "all"]
"""Where differentiable binary masking patches heads (``DBMConfig.positions``)."""
DBM_POSITIONS: tuple[str, ...] = get_args(DBMPositions)
Ablation = Literal["counterfactual", "mean", "zero"]
"""How heads outside a circuit are removed (``DiscoveryConfig.ablation``)."""
ABLATIONS: tuple[str, ...] = get_args(Ablation)
LossType = Literal["dr_grpo", "grpo", "dapo", "reinforce"]
"""RL losses (``RLConfig.loss_type``)."""
LOSS_TYPES: tuple[str, ...] = get_args(LossType)
ScaleRewards = Literal["none", "group", "batch"]
"""Advantage scaling (``RLConfig.scale_rewards``)."""
SCALE_REWARDS: tuple[str, ...] = get_args(ScaleRewards)
PreserveHeads = Literal["circuit", "dcv", "all"]
"""Which heads preservation protects (``PreserveConfig.heads``)."""
PRESERVE_HEADS: tuple[str, ...] = get_args(PreserveHeads)
MonitorAction = Literal["warn", "stop"]
"""What the circuit monitor does below its threshold (``MonitorConfig.action``)."""
MONITOR_ACTIONS: tuple[str, ...] = get_args(MonitorAction)
MetricName = Literal["logit_diff", "prob_diff", "logp_answer", "prob_answer", "top1_margin"]
"""Task metrics: the names of ``tasks.base.METRICS`` (a test checks they are the same)."""
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)
SyntheticTarget = Literal["compare", "compare-short", "facts"]
"""Built-in target tasks (``FinetuneConfig.synthetic_target``)."""
SYNTHETIC_TARGETS: tuple[str, ...] = get_args(SyntheticTarget)

_DEFERRED: ContextVar[bool] = ContextVar("forgetlens_deferred_validation", default=False)


@contextmanager
def deferred_validation() -> Iterator[None]:
    """Build options without checking each object as it is made: for a loader that fills a config from a file or
    from flags and then reports every problem at once (``problems()`` on the whole)."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


_FIELD_DOCS: dict[str, dict[str, str]] = {}


def _field_docs(cls: type) -> dict[str, str]:
    import ast
    import inspect
    import textwrap

    key = f"{cls.__module__}.{cls.__qualname__}"
    if key in _FIELD_DOCS:
        return _FIELD_DOCS[key]
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    _FIELD_DOCS[key] = docs
    return docs


class Options:
    """Base of every options dataclass: an object is checked when it is built (outside
    :func:`deferred_validation`), and ``problems()`` lists what is wrong with it, one line per field."""

    def problems(self, prefix: str = "") -> list[str]:
        return []

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """{field: its docstring}: the string literal after each field in the class body, read from the source
        (what ``--help`` says about the option of that field)."""
        return _field_docs(cls)

    def problems_when_built(self) -> list[str]:
        """The checks made at construction (all of ``problems()`` unless a subclass needs the file system)."""
        return self.problems()

    def __post_init__(self) -> None:
        if _DEFERRED.get():
            return
        problems = self.problems_when_built()
        if problems:
            from forgetlens.errors import ForgetlensError

            raise ForgetlensError("\n".join(f"{type(self).__name__}.{p}" for p in problems))


def _one_of(problems: list[str], key: str, value, allowed: tuple, what: str) -> None:
    if value not in allowed:
        problems.append(f"{key}: unknown {what} {short_repr(value)}; expected one of {', '.join(allowed)}")


def _positive(problems: list[str], obj, prefix: str, names: tuple[str, ...], optional: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (optional and value is None) and value <= 0:
            kind = "integer" if isinstance(value, int) else "number"
            problems.append(f"{prefix}{name}: expected a positive {kind}, got {value}")


def _comparisons(problems: list[str], key: str, texts: list[str]) -> list[tuple[str, Comparison]]:
    """Each ``FIRST:SECOND`` of ``texts`` that parses, with it; a problem under ``key`` for each that does not."""
    parsed = []
    for text in texts:
        try:
            parsed.append((text, Comparison.parse(text)))
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    return parsed


def _discovery_methods(problems: list[str], key: str, methods: list[str]) -> None:
    """A problem under ``key`` for each of ``methods`` that is not a discovery method, and for repeats."""
    for m in methods:
        _one_of(problems, key, m, DISCOVERY_METHODS, "discovery method")
    if len(set(methods)) != len(methods):
        problems.append(f"{key}: repeated methods in {methods}")


def _finite(problems: list[str], obj, prefix: str) -> None:
    """A problem for every float field of ``obj`` (or float in a list field) that is NaN or infinite: no range
    check can see NaN (every comparison with it is false), so it is refused here first."""
    import dataclasses
    import math

    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                problems.append(f"{prefix}{f.name}: expected a finite number, got {v}")


def _unknown_tasks(problems: list[str], key: str, names: list[str] | None) -> None:
    from forgetlens.tasks.registry import task_names

    known = task_names()
    for t in names or []:
        if t not in known:
            problems.append(f"{key}: unknown task {short_repr(t)}; known: {', '.join(known)}")


@dataclass
class DBMConfig(Options):
    """Differentiable binary masking (``circuits/dbm.py``): one mask m_h in [0, 1] per attention head, the head's
    output mixed as (1 - m_h) a_h(clean) + m_h a_h(source), the masks minimising -log p(target) + sparsity * sum_h
    m_h; m_h = sigmoid(logit_h / tau), tau annealed geometrically, Adam on the logits; the circuit is the heads
    whose final mask exceeds ``threshold``. Defaults follow the paper's public follow-up code (arXiv 2605.28860)
    except ``sparsity``, which neither states."""

    objective: DBMObjective = "flip"
    """``flip`` (the paper's): m_h is the share of head h's output taken from the corrupted (counterfactual)
    prompt, the target is the corrupted prompt's answer: the circuit is the heads that carry the counterfactual
    answer. ``keep``: m_h is the share of the head's own output kept, the rest from ``DiscoveryConfig.ablation``'s
    source, the target is the clean answer: the circuit is the heads the clean answer needs."""
    positions: DBMPositions = "last"
    """Where heads are mixed: ``last`` (the paper's: each prompt's last token, the one that predicts the answer;
    every earlier position is then the clean run's whatever the masks, so it is computed once per prompt and each
    step runs one token per prompt) or ``all`` (every position; a full forward per step)."""
    sparsity: float = 0.002
    """lambda: the loss's weight on sum_h m_h (the mean over the batch of -log p is in nats); larger gives
    smaller circuits. 0.002 is this project's choice (the paper states none): on SmolLM2-135M it gives circuits of
    6-24 % of the heads, on the embedded model 4-8 of 32."""
    steps: int = 300
    """Adam steps on the mask logits."""
    batch_size: int = 8
    """Prompts per step, drawn at random from the discovery prompts."""
    lr: float = 0.1
    """Adam's learning rate on the mask logits."""
    tau_start: float = 1.0
    """Sigmoid temperature at the first step."""
    tau_end: float = 0.05
    """Sigmoid temperature at the last step (geometric schedule in between); the final masks use it."""
    threshold: float = 0.5
    """A head is in the circuit when its final mask exceeds this."""
    init_logit: float = 0.0
    """Every mask logit's starting value (0: every mask starts at 0.5)."""
    seed: int = 0
    """Seeds the order in which prompts are drawn."""

    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with these options, one line each."""
        out: list[str] = []
        _finite(out, self, prefix)
        _one_of(out, f"{prefix}objective", self.objective, DBM_OBJECTIVES, "DBM objective")
        _one_of(out, f"{prefix}positions", self.positions, DBM_POSITIONS, "DBM positions")
        _positive(out, self, prefix, ("steps", "batch_size", "lr", "tau_start", "tau_end"))
        if self.sparsity < 0:
            out.append(f"{prefix}sparsity: expected a number >= 0, got {self.sparsity}")
        if self.tau_end > self.tau_start:
            out.append(f"{prefix}tau_end: expected at most tau_start ({self.tau_start}), got {self.tau_end}")
        if not 0 < self.threshold < 1:
            out.append(f"{prefix}threshold: expected a number in (0, 1), got {self.threshold}")
        return out


@dataclass
class DiscoveryConfig(Options):
    """How a base circuit is found (``forgetlens discover``)."""

    method: DiscoveryMethod = "attribution"
    """How the circuit is found: heads scored one by one by ``attribution`` (EAP), ``ig`` (EAP-IG) or ``exact``
    (activation patching), the top ones kept; or ``dbm`` (differentiable binary masking, options in ``dbm``)."""
    metric: str = "logit_diff"
    """Task metric at the answer position: ``logit_diff`` or ``prob_diff`` (against the corrupted prompt's
    answer), or ``logp_answer``, ``prob_answer``, ``top1_margin`` (over the whole vocabulary; see
    ``tasks.base.task_metric``)."""
    ablation: Ablation = "counterfactual"
    """How heads outside a circuit are removed for faithfulness: ``counterfactual``, ``mean`` or ``zero``."""
    k: int | None = None
    """Circuit size; None picks the smallest k whose faithfulness reaches ``faithfulness_target``."""
    faithfulness_target: float = 0.8
    """Faithfulness a circuit must reach when ``k`` is None."""
    ig_steps: int = 8
    """Interpolation steps for ``ig``."""
    full_curve: bool = False
    """Evaluate faithfulness at every circuit size of the default grid (one patched forward pass each) instead of
    finding k by bisection (about log2(heads) sizes)."""
    n_examples: int = 256
    """Prompts drawn from the task."""
    batch_size: int = 64
    """Prompts per forward pass."""
    seed: int = 0
    """Seeds the task prompts."""
    dbm: DBMConfig = field(default_factory=lambda: DBMConfig())
    """Differentiable binary masking's options (used when ``method`` is ``dbm``; its circuit is the heads whose
    mask ends above ``dbm.threshold``, so ``k``, ``faithfulness_target`` and ``full_curve`` do not apply)."""

    @property
    def scoring_method(self) -> str:
        """The per-head scoring that measurements of this circuit use in every model: ``method`` itself, or
        attribution for a DBM circuit (DBM gives masks, not per-head effects)."""
        return self.method if self.method in SCORING_METHODS else "attribution"

    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with these options, one line each (``prefix`` names the config section)."""
        out: list[str] = []
        _finite(out, self, prefix)
        out += self.dbm.problems(f"{prefix}dbm.")
        if self.method == "dbm" and self.k is not None:
            out.append(f"{prefix}k: a DBM circuit's size is set by its masks (dbm.sparsity), not by k")
        _one_of(out, f"{prefix}method", self.method, DISCOVERY_METHODS, "discovery method")
        from forgetlens.tasks.base import METRICS

        _one_of(out, f"{prefix}metric", self.metric, METRICS, "metric")
        _one_of(out, f"{prefix}ablation", self.ablation, ABLATIONS, "ablation")
        _positive(out, self, prefix, ("ig_steps", "batch_size"))
        _positive(out, self, prefix, ("k",), optional=True)
        if self.n_examples < 2:
            out.append(f"{prefix}n_examples: expected at least 2, got {self.n_examples}")
        if not 0 < self.faithfulness_target <= 1:
            out.append(f"{prefix}faithfulness_target: expected a number in (0, 1], got {self.faithfulness_target}")
        return out


@dataclass
class RLConfig(Options):
    """GRPO-family settings (TRL ``GRPOConfig``); defaults follow the study: Dr.GRPO, no KL penalty."""

    loss_type: LossType = "dr_grpo"
    """TRL loss: ``dr_grpo`` (default), ``grpo``, ``dapo``, or ``reinforce`` (Dr.GRPO loss with a 1-0 reward and
    group-mean baseline, one policy update per generation: plain REINFORCE with a baseline)."""
    beta: float = 0.0
    """KL-to-reference penalty; 0 as in the study (TRL then logs no KL: forgetlens measures it itself)."""
    num_generations: int = 8
    """Group size: completions sampled per prompt."""
    temperature: float = 1.0
    """Sampling temperature for rollouts."""
    max_completion_length: int = 8
    """Tokens generated per completion (the embedded model answers with a letter)."""
    scale_rewards: ScaleRewards = "none"
    """Advantage scaling by the group's reward std: ``none`` (Dr.GRPO), ``group`` or ``batch``."""
    format_reward: float = 0.0
    """Weight of an extra reward for answering with a bare letter (0 = off)."""
    use_vllm: bool = False
    """Generate with vLLM when installed (GPU runs); plain ``generate`` otherwise."""
    shared_prompt_scoring: bool = True
    """Score each prompt's ``num_generations`` completions against one forward pass of the prompt (its key/value
    cache repeated) instead of ``num_generations`` full copies: the same log-probabilities and gradients, computed
    from fewer tokens (``training/shared_prompt.py``). Used on one process without gradient checkpointing or
    dropout; TRL's own scoring otherwise, and when this is false."""
    shared_prefill_generation: bool = True
    """Sample each prompt's ``num_generations`` completions from one prefill of the prompt (its key/value cache
    repeated) instead of prefilling ``num_generations`` copies: the same sampling distribution at a fraction of the
    cost (``training/rollouts.py``). Used on one process with plain temperature sampling; TRL's ``generate``
    otherwise, and when this is false (the two draw different samples from the same seed)."""
    oversample: int = 1
    """Dynamic sampling (DAPO, Yu et al. 2025): each step samples groups for ``oversample`` times
    ``prompts_per_step`` prompts and trains on ``prompts_per_step`` of them, those whose rewards vary first, so
    fewer trained groups carry no signal; the log keeps both shares (``training/dynamic_sampling.py``). 1: off.
    The training schedule then holds ``oversample`` times the prompts a step; one process, no ``micro_batch``."""

    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with these options, one line each."""
        out: list[str] = []
        _finite(out, self, prefix)
        _one_of(out, f"{prefix}loss_type", self.loss_type, LOSS_TYPES, "loss type")
        if self.oversample < 1:
            out.append(f"{prefix}oversample: expected at least 1 (1: off), got {self.oversample}")
        _one_of(out, f"{prefix}scale_rewards", self.scale_rewards, SCALE_REWARDS, "reward scaling")
        if self.num_generations < 2:
            out.append(f"{prefix}num_generations: expected at least 2, got {self.num_generations}")
        _positive(out, self, prefix, ("temperature", "max_completion_length"))
        for name in ("beta", "format_reward"):
            if getattr(self, name) < 0:
                out.append(f"{prefix}{name}: expected >= 0, got {getattr(self, name)}")
        return out


@dataclass
class PreserveConfig(Options):
    """Circuit preservation (``sft-preserve``, ``rl-preserve``): the loss plus
    lam * sum over protected heads h of ||a_theta(h) - a_0(h)||^2 on prior-task prompts (o_proj inputs; the base
    activations are computed once)."""

    lam: float = 1.0
    """lambda, the weight of the penalty (>= 0)."""
    heads: PreserveHeads = "circuit"
    """Which heads: ``circuit`` (each task's base circuit C0), ``dcv`` (the ``top_k`` heads of largest DCV per task
    from ``dcv_results``) or ``all``."""
    top_k: int = 8
    """Heads per task for ``dcv``."""
    dcv_results: str | None = None
    """A study's results.json whose DCV ranks the heads (``heads: dcv``)."""
    tasks: list[str] | None = None
    """Prior tasks whose prompts and circuits are protected (None = ``prior_tasks``)."""
    n_prompts: int = 64
    """Fixed prior-task prompts per task (base activations cached once)."""
    prompts_per_step: int = 8
    """Of those, prompts per optimizer step (taken in turn)."""
    discovery_examples: int = 128
    """Prompts for finding each base circuit (``heads: circuit``); seeded by ``seed`` like the study's."""

    def problems(self, prefix: str = "", needs_dcv_results: bool = False) -> list[str]:
        """Every problem with these options, one line each (``needs_dcv_results``: a preserving run reads them)."""
        out: list[str] = []
        _finite(out, self, prefix)
        if self.lam < 0:
            out.append(f"{prefix}lam: expected >= 0, got {self.lam}")
        _one_of(out, f"{prefix}heads", self.heads, PRESERVE_HEADS, "head selection")
        if needs_dcv_results and self.heads == "dcv" and not (self.dcv_results and Path(self.dcv_results).is_file()):
            out.append(
                f"{prefix}dcv_results: heads 'dcv' needs an existing results.json, got {short_repr(self.dcv_results)}"
            )
        _positive(out, self, prefix, ("top_k", "n_prompts", "prompts_per_step", "discovery_examples"))
        _unknown_tasks(out, f"{prefix}tasks", self.tasks)
        return out


@dataclass
class ReplayConfig(Options):
    """Replay (``replay``): SFT's loss plus weight * next-token loss on prior-task documents."""

    weight: float = 1.0
    """Weight of the replay loss (>= 0); 1 = as if the documents were mixed into the batch one for one."""
    documents_per_step: int = 8
    """Prior-task documents per optimizer step."""
    tasks: list[str] | None = None
    """Prior tasks replayed (None = ``prior_tasks``)."""

    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with these options, one line each."""
        out: list[str] = []
        _finite(out, self, prefix)
        if self.weight < 0:
            out.append(f"{prefix}weight: expected >= 0, got {self.weight}")
        _positive(out, self, prefix, ("documents_per_step",))
        _unknown_tasks(out, f"{prefix}tasks", self.tasks)
        return out


@dataclass
class MonitorConfig(Options):
    """``CircuitMonitor`` during training (``measure/monitor.py``)."""

    every: int = 0
    """Measure every N optimizer steps (0 = off)."""
    tasks: list[str] | None = None
    """Prior tasks watched (None = ``prior_tasks``)."""
    n_prompts: int = 32
    """Fixed prompts per task."""
    threshold: float | None = None
    """Faithfulness retention below which ``action`` happens (None = never)."""
    action: MonitorAction = "warn"
    """``warn`` or ``stop`` (end training at that step)."""

    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with these options, one line each."""
        out: list[str] = []
        _finite(out, self, prefix)
        if self.every < 0:
            out.append(f"{prefix}every: expected >= 0 steps (0 = off), got {self.every}")
        _one_of(out, f"{prefix}action", self.action, MONITOR_ACTIONS, "action")
        if self.n_prompts < 2:
            out.append(f"{prefix}n_prompts: expected at least 2, got {self.n_prompts}")
        _unknown_tasks(out, f"{prefix}tasks", self.tasks)
        return out


MAX_LEARNING_RATE = 1.0
"""Largest learning rate forgetlens accepts (Adam moves each weight by about the rate per step; far beyond 1e-2 a
full fine-tune of a pretrained model diverges)."""
MAX_SEED = 2**32
"""Seeds are below this (numpy's generators take no more)."""
MAX_STEPS = 1_000_000
"""Most optimizer steps of one run (the training schedule is drawn up front: steps x prompts records)."""
MAX_BATCH = 100_000
"""Most prompts per step, and most evaluation prompts per prior task."""


def _trainer(name: str) -> str | None:
    """The trainer of method ``name`` (None for a name that is not one: its own problem is reported apart)."""
    method = METHODS.get(name)
    return None if method is None else method.trainer


def _regularizer(name: str) -> str | None:
    """The loss term method ``name`` adds (None for none, or for a name that is not a method)."""
    method = METHODS.get(name)
    return None if method is None else method.regularizer


@dataclass
class FinetuneConfig(Options):
    """One fine-tuning run (``forgetlens finetune``); SFT and RL runs share everything but ``method``."""

    method: FinetuneMethod = "sft"
    """``sft``, ``rl``, ``sft-preserve``, ``rl-preserve``, ``replay`` (SFT + prior-task replay), ``rl-replay`` (RL +
    prior-task replay) or ``sft-kl`` (SFT + KL to the base); what each is: ``config/methods.py``."""
    model: str = "embedded"
    """Base model: ``embedded``, a packaged model (``smollm2-135m``, ``qwen2.5-coder-0.5b``), a local directory or a
    cached HF id."""
    data: str | None = None
    """Target-task file or directory (SciKnowEval/SciQ); None = the built-in ``synthetic_target``."""
    synthetic_target: SyntheticTarget = "compare"
    """Built-in target when ``data`` is None: ``compare`` (which of four quantities is the largest / smallest,
    on the half of the comparisons the embedded model never practised; ``targets/comparisons.py``),
    ``compare-short`` (the same questions without options, answered with the value and unit) or ``facts``
    (element symbols and SI units from the table the embedded model read as statements; ``targets/science_qa.py``).
"""
    seed: int = 0
    """Seeds the data split, the option order, the sampler and the weights' updates."""
    steps: int = 480
    """Optimizer steps (the same for both methods: matched budget)."""
    prompts_per_step: int = 8
    """Distinct training prompts per optimizer step (RL samples ``num_generations`` completions of each)."""
    lr_sft: float = 3e-3
    """SFT learning rate (a study's configs state the rule that chose theirs, ``forgetlens sweep``)."""
    lr_rl: float = 1e-4
    """RL learning rate (chosen by the same rule as ``lr_sft``)."""
    warmup_steps: int = 0
    """Steps of linear learning-rate warm-up from 0, then constant (0: constant from the first step). RL in the
    literature's regime warms up (TRL's GRPO recipes; RL's Razor)."""
    checkpoint_every: int = 120
    """Save a checkpoint every N steps; each one's behaviour is measured, and step 0's (the base model, read from
    ``model``, not copied into the run)."""
    keep_optimizer: bool = False
    """Keep each checkpoint's optimizer, scheduler and RNG state after the run completes (``--keep-optimizer``;
    needed only to train further from a checkpoint exactly as an unbroken run would). While the run trains they
    are kept, so that an interrupted run resumes."""
    init_from: str | None = None
    """Train from this fine-tuned model of ``model`` instead of from ``model``: a run directory (its last
    checkpoint) or a checkpoint directory, full weights or a PEFT adapter. Behaviour, forgetting and KL are still
    measured against ``model``, whose row is step 0; None = train from ``model``."""
    eval_fraction: float = 0.3
    """Share of target questions held out for evaluation (never trained on)."""
    variants_per_question: int = 8
    """Option orders drawn per ``facts`` question (train and eval); ``compare`` asks each digit set once."""
    max_records: int | None = None
    """Cap on target records, from ``data`` or the built-in target, drawn at random before the split (None = all)."""
    prior_tasks: list[str] | None = None
    """Prior tasks measured at every checkpoint, and protected, replayed or watched when those sections name none
    (None = the model's default set, ``tasks.registry.default_task_names``); a study sets it from its ``tasks``."""
    prior_eval_examples: int = 200
    """Held-out prompts per prior task at every checkpoint."""
    prior_per_prompt: bool = False
    """Also record, in every behaviour row, each prior-task prompt's top-1 correctness and log p(answer) (paired
    tests and bootstraps over prompts need them; ``forgetlens frontier`` turns it on)."""
    kl_samples: int = 4
    """Completions sampled from the base model per evaluation prompt for the forward-KL estimate."""
    kl_prompts: int | None = None
    """Evaluation prompts the forward-KL estimate uses: the first N of the evaluation split (None = all)."""
    kl_max_new_tokens: int | None = None
    """Length cap of the sampled base completions the forward KL is summed over (None = ``max_new_tokens``).
    A completion ends at the end-of-turn token; a cap that cuts it sums the KL of its first tokens only (a lower
    bound on the whole completion's KL); ``behaviour.json`` records the share of samples cut."""
    general_eval: bool = False
    """Also measure off-task behaviour at every checkpoint (``targets/general.py``): forward KL to the base on
    built-in general chat prompts (one base completion of up to ``chat_kl_tokens`` tokens each) and accuracy on
    general-knowledge questions (capitals, element symbols, SI units; the option whose text is likeliest as the
    reply, ``measure/behaviour.option_choices``)."""
    chat_kl_tokens: int = 48
    """Length cap of the base completions sampled for the general-chat forward KL (``general_eval``)."""
    max_new_tokens: int = 8
    """Greedy decoding length for target accuracy."""
    accuracy_threshold: float = 0.8
    """Target accuracy whose first crossing defines adaptation speed."""
    bf16: bool = False
    """bfloat16 training (TRL defaults to True; off on CPU)."""
    gradient_checkpointing: bool = False
    """Activation checkpointing (TRL defaults to True; off for small models)."""
    lora_rank: int = 0
    """LoRA rank through PEFT (0 = full fine-tuning)."""
    micro_batch: int | None = None
    """Sequences per forward/backward pass on each device (SFT: prompts; RL: completions); the rest of a step
    is gradient accumulation. None = the whole step in one pass."""
    threads: int | None = None
    """torch CPU threads (None: 1 for small models)."""
    rl: RLConfig = field(default_factory=RLConfig)
    """RL-only settings."""
    preserve: PreserveConfig = field(default_factory=PreserveConfig)
    """Circuit preservation (``sft-preserve``, ``rl-preserve``)."""
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    """Replay of prior-task data (``replay``)."""
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    """Watch base circuits while training (off by default)."""
    kl_coef: float = 0.1
    """``sft-kl``: weight of KL(base || tuned) on the SFT batch's completion tokens (>= 0)."""

    @property
    def learning_rate(self) -> float:
        """The rate its method trains at (``lr_sft`` or ``lr_rl``: ``config/methods.py``)."""
        return self.lr_rl if finetune_method(self.method).learning_rate_option == "lr_rl" else self.lr_sft

    def with_learning_rate(self, lr: float) -> FinetuneConfig:
        """The same run at rate ``lr`` (the option its method reads)."""
        if finetune_method(self.method).learning_rate_option == "lr_rl":
            return replace(self, lr_rl=lr)
        return replace(self, lr_sft=lr)

    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with the options of one run, one line each (``prefix`` names the config section)."""
        out: list[str] = []
        _finite(out, self, prefix)
        _one_of(out, f"{prefix}method", self.method, FINETUNE_METHODS, "method")
        _one_of(out, f"{prefix}synthetic_target", self.synthetic_target, SYNTHETIC_TARGETS, "target")
        _positive(
            out,
            self,
            prefix,
            (
                "steps",
                "prompts_per_step",
                "checkpoint_every",
                "prior_eval_examples",
                "kl_samples",
                "max_new_tokens",
                "chat_kl_tokens",
                "lr_sft",
                "lr_rl",
                "variants_per_question",
            ),
        )
        _positive(
            out,
            self,
            prefix,
            ("kl_prompts", "kl_max_new_tokens", "max_records", "micro_batch", "threads"),
            optional=True,
        )
        if not 0 < self.eval_fraction < 1:
            out.append(f"{prefix}eval_fraction: expected a share in (0, 1), got {self.eval_fraction}")
        if not 0 < self.accuracy_threshold <= 1:
            out.append(
                f"{prefix}accuracy_threshold: expected a target accuracy in (0, 1], got {self.accuracy_threshold}"
            )
        if self.warmup_steps < 0:
            out.append(f"{prefix}warmup_steps: expected >= 0 (0 = no warm-up), got {self.warmup_steps}")
        for name in ("lr_sft", "lr_rl"):
            lr = getattr(self, name)
            if isinstance(lr, float | int) and lr > MAX_LEARNING_RATE:
                out.append(
                    f"{prefix}{name}: expected a learning rate in (0, {MAX_LEARNING_RATE:g}], got {lr:g} (Adam moves "
                    "every weight by about the rate each step)"
                )
        if not 0 <= self.seed < MAX_SEED:
            out.append(f"{prefix}seed: expected an integer in [0, 2^32), got {self.seed}")
        for name, bound in (("steps", MAX_STEPS), ("prompts_per_step", MAX_BATCH), ("prior_eval_examples", MAX_BATCH)):
            if getattr(self, name) > bound:
                out.append(f"{prefix}{name}: expected at most {bound:,}, got {getattr(self, name):,}")
        if self.lora_rank < 0:
            out.append(f"{prefix}lora_rank: expected >= 0 (0 = full fine-tuning), got {self.lora_rank}")
        if self.kl_coef < 0:
            out.append(f"{prefix}kl_coef: expected >= 0, got {self.kl_coef}")
        _unknown_tasks(out, f"{prefix}prior_tasks", self.prior_tasks)
        out += self.rl.problems(f"{prefix}rl.")
        if self.rl.oversample > 1 and self.micro_batch is not None:
            out.append(f"{prefix}rl.oversample: dynamic sampling trains one batch a step; leave micro_batch unset")
        out += self.preserve.problems(f"{prefix}preserve.", needs_dcv_results=_regularizer(self.method) == "preserve")
        out += self.replay.problems(f"{prefix}replay.")
        out += self.monitor.problems(f"{prefix}monitor.")
        return out


@dataclass
class AnatomyConfig(Options):
    """Where each run's change on each prior task lives (``measure/anatomy.py``), measured on its last checkpoint
    against the base circuit's evaluation prompts."""

    enabled: bool = False
    """Measure it (about 30-40 forward passes over the evaluation prompts per task and run)."""
    metric: str = "logp_answer"
    """Metric that steers the layer search and picks the heads outside C0 to patch exactly (every metric is
    reported): one of ``tasks.base.METRICS``."""
    min_block: int = 4
    """The halving search over layers stops at blocks of at most this many layers."""
    n_exact_heads: int = 4
    """Heads outside C0 of largest first-order total change that are patched exactly."""

    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with these options, one line each."""
        from forgetlens.tasks.base import METRICS

        out: list[str] = []
        _one_of(out, f"{prefix}metric", self.metric, METRICS, "metric")
        _positive(out, self, prefix, ("min_block",))
        if self.n_exact_heads < 0:
            out.append(f"{prefix}n_exact_heads: expected >= 0, got {self.n_exact_heads}")
        return out


@dataclass
class OwnCircuitsConfig(Options):
    """Each model's own circuit: found again in the base model (on all discovery prompts and on each half of them)
    and in every tuned run's last checkpoint, by each method in ``methods``, and compared with the base circuit
    (``analysis/own_circuits.py``: retention, overlap, Jaccard, mask shifts, null, ceiling)."""

    enabled: bool = False
    """Find and compare them (one discovery per method, model and task; three for the base)."""
    methods: list[DiscoveryMethod] = field(default_factory=lambda: ["dbm"])
    """Discovery methods, each one's circuits compared with the same method's base circuit; every other
    discovery option is the study's ``discovery`` section's."""
    n_null: int = 1000
    """Random head sets drawn for each permutation null."""
    delta: float = 0.1
    """Mask margin of the paper's vulnerable heads {h in C0 : m_h(SFT) < m_h(RL) - delta} (DBM circuits)."""
    necessity: bool = True
    """Per head of the base DBM circuit, in the base and every tuned checkpoint: necessity (drop in log p of the
    clean answer when it alone is ablated at the last token) and sufficiency (the share it restores alone)."""

    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with these options, one line each."""
        out: list[str] = []
        _finite(out, self, prefix)
        _discovery_methods(out, f"{prefix}methods", list(self.methods))
        if self.enabled and not self.methods:
            out.append(f"{prefix}methods: expected at least one discovery method")
        if self.n_null < 1:
            out.append(f"{prefix}n_null: expected a positive integer, got {self.n_null}")
        if not 0 <= self.delta < 1:
            out.append(f"{prefix}delta: expected a number in [0, 1), got {self.delta}")
        return out


@dataclass
class BenchmarkConfig(Options):
    """Standard benchmarks through lm-evaluation-harness (optional; see ``measure/benchmarks.py``)."""

    tasks: list[str] = field(default_factory=list)
    """lm-eval task names, e.g. mmlu, hellaswag, truthfulqa_mc2, winogrande, arc_challenge, ifeval; [] = none."""
    include_path: str | None = None
    """Folder of lm-eval task YAMLs (e.g. ones whose ``dataset_path``/``data_files`` name local files)."""
    limit: int | None = 500
    """Examples per benchmark (None = all)."""
    batch_size: int = 8
    """Sequences per forward pass."""
    seed: int = 0
    """Seeds lm-eval's sampling of few-shot examples."""


@dataclass
class StudyConfig(Options):
    """The whole study (``forgetlens run``): base circuits, SFT and RL runs, circuit metrics, report."""

    model: str = "embedded"
    """Base model: ``embedded``, a packaged model (``smollm2-135m``, ``qwen2.5-coder-0.5b``), a local directory or a
    cached HF id."""
    data: str | None = None
    """Target-task file or directory (SciKnowEval/SciQ); None = the built-in ``finetune.synthetic_target``."""
    tasks: list[str] | None = None
    """Prior-capability tasks whose circuits are followed (None = the model's default set: for the embedded model
    copying, ioi, greater_than, fact_recall; for other models induction, ioi, greater_than_year, fact_recall;
    ``forgetlens tasks`` lists all)."""
    methods: list[FinetuneMethod] = field(default_factory=lambda: ["sft", "rl"])
    """Fine-tuning methods, each run once per seed."""
    comparisons: list[str] | None = None
    """Which methods are compared model by model, ``FIRST:SECOND`` each (``sft-preserve:rl-preserve``): DCV (the
    first's circuit damage minus the second's) and the matched levels, for every model of the first with the
    second's of the same seed, rate and step; both must be in ``methods``.  None: ``sft:rl`` when both run."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds (``--seeds`` overrides)."""
    sft_lr_grid: list[float] = field(default_factory=list)
    """Extra SFT runs, one per learning rate (named ``sft-lrLR-sSEED``), for the Pareto view and the forgetting
    predictors; DCV compares the ``sft`` run at ``finetune.lr_sft`` with ``rl``."""
    n_boot: int = 1000
    """Bootstrap resamples for every confidence interval."""
    total_cmap: bool = True
    """Also measure the paper's (total) CMAP beside the head-local default (doubles the exact patching)."""
    cmap_top_m: int | None = 8
    """CMAP is estimated to first order for every head and patched exactly for the base circuit C0 and the M
    other heads of largest estimated |effect|, M = this (``measure/first_order_cmap.py``).  V(C0) and DCV(C0)
    come from exact values.  None patches every head exactly (one forward pass per head and prompt chunk)."""
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(checkpoint_every=160))
    """Fine-tuning options shared by all runs (``method``, ``seed``, ``model``, ``data`` are set by the study);
    checkpoints every 160 steps (3 besides the base) keep the per-checkpoint circuit measurements within the CPU
    budget."""
    benchmarks: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    """Standard benchmarks on the base model and every run's last checkpoint (needs lm-eval; off by default)."""
    anatomy: AnatomyConfig = field(default_factory=AnatomyConfig)
    """Where each run's change lives (off by default; the main job turns it on)."""
    own_circuits: OwnCircuitsConfig = field(default_factory=OwnCircuitsConfig)
    """Each model's own circuit against the base circuit (off by default)."""
    rl_from_sft: bool = False
    """Also train RL from each seed's last SFT checkpoint, as the paper does (runs ``sft-rl-sSEED``: the ``rl``
    runs' options and steps on top of the ``sft`` run's); needs ``sft`` and ``rl`` in ``methods``. Its behaviour,
    forgetting and KL are measured against the base model, like every run's."""
    discovery: DiscoveryConfig = field(default_factory=lambda: DiscoveryConfig(n_examples=128))
    """How base circuits are found; ``n_examples`` prompts each for discovery and for evaluation."""

    @property
    def compared(self) -> list[Comparison]:
        """The comparisons the study makes (``comparisons``, or ``sft:rl`` when both run)."""
        if self.comparisons is not None:
            return [Comparison.parse(text) for text in self.comparisons]
        return [DEFAULT_COMPARISON] if {"sft", "rl"} <= set(self.methods) else []

    def problems_when_built(self) -> list[str]:
        return self.problems(check_paths=False)

    def problems(self, prefix: str = "", check_paths: bool = True) -> list[str]:
        """Every problem with the study's options, one line each, naming the key (``check_paths=False``: ``data``
        need not exist, as for ``forgetlens plan``)."""
        import os

        out: list[str] = []
        _finite(out, self, "")
        _unknown_tasks(out, "tasks", self.tasks)
        for m in self.methods:
            _one_of(out, "methods", m, FINETUNE_METHODS, "method")
        if not self.methods:
            out.append("methods: expected at least one method")
        for text, comparison in _comparisons(out, "comparisons", self.comparisons or []):
            missing = [m for m in (comparison.first, comparison.second) if m not in self.methods]
            if missing:
                out.append(f"comparisons: {text} compares {', '.join(missing)}, not in methods {self.methods}")
        if not self.seeds:
            out.append("seeds: expected at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            out.append(f"seeds: repeated seeds in {self.seeds}")
        if self.n_boot < 1:
            out.append(f"n_boot: expected a positive integer, got {self.n_boot}")
        if self.cmap_top_m is not None and self.cmap_top_m < 0:
            out.append(f"cmap_top_m: expected a number of heads >= 0 or null (every head exact), got {self.cmap_top_m}")
        for lr in self.sft_lr_grid:
            if lr <= 0:
                out.append(f"sft_lr_grid: expected positive learning rates, got {lr}")
        ft, defaults = self.finetune, FinetuneConfig()
        for name in ("method", "seed", "model", "data"):
            if getattr(ft, name) != getattr(defaults, name):
                out.append(f"finetune.{name}: set by the study (use the top-level methods, seeds, model, data)")
        preserving: FinetuneMethod = next((m for m in self.methods if _regularizer(m) == "preserve"), "sft")
        with deferred_validation():  # a preserving run's config, which checks preserve.dcv_results
            out += replace(ft, method=preserving).problems("finetune.")
        if ft.micro_batch is not None:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            for kind, total in (("sft", ft.prompts_per_step), ("rl", ft.prompts_per_step * ft.rl.num_generations)):
                if any(_trainer(m) == kind for m in self.methods) and total % (ft.micro_batch * world):
                    out.append(
                        f"finetune.micro_batch: {ft.micro_batch} x {world} device(s) must divide the {kind} "
                        f"batch of {total} sequences per step"
                    )
        out += self.discovery.problems("discovery.")
        out += self.anatomy.problems("anatomy.")
        out += self.own_circuits.problems("own_circuits.")
        if self.rl_from_sft and not {"sft", "rl"} <= set(self.methods):
            out.append(f"rl_from_sft: needs both sft and rl in methods, got {self.methods}")
        if self.benchmarks.limit is not None and self.benchmarks.limit <= 0:
            out.append(f"benchmarks.limit: expected a positive integer or null, got {self.benchmarks.limit}")
        if check_paths and self.data is not None and not Path(self.data).exists():
            out.append(f"data: {self.data} does not exist; expected a SciKnowEval/SciQ file or directory")
        return out


@dataclass
class FrontierArm(Options):
    """One method of a frontier: trained at each of ``lrs``, every seed, each run to its plateau."""

    method: FinetuneMethod = "sft"
    """The fine-tuning method (``FinetuneConfig.method``)."""
    lrs: list[float] = field(default_factory=lambda: [1e-4])
    """Learning rates, one run each per seed."""
    steps: int | None = None
    """Most optimizer steps a run of this arm trains (None: the frontier's ``max_steps``)."""
    warmup_steps: int | None = None
    """Linear warm-up steps of this arm's runs (None: ``finetune.warmup_steps``)."""
    lora_rank: int | None = None
    """LoRA rank of this arm's runs (0: full fine-tuning; None: ``finetune.lora_rank``); an arm with LoRA is named
    ``METHOD-loraR``, so the same method with and without LoRA are two arms."""

    @property
    def name(self) -> str:
        """The arm's name in results and figures: its method, and ``-loraR`` when it trains LoRA adapters."""
        return f"{self.method}-lora{self.lora_rank}" if self.lora_rank else self.method

    def problems(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        _finite(out, self, prefix)
        _one_of(out, f"{prefix}method", self.method, FINETUNE_METHODS, "method")
        if not self.lrs:
            out.append(f"{prefix}lrs: expected at least one learning rate")
        for lr in self.lrs:
            if not 0 < lr <= MAX_LEARNING_RATE:
                out.append(f"{prefix}lrs: expected learning rates in (0, {MAX_LEARNING_RATE:g}], got {lr}")
        if len(set(self.lrs)) != len(self.lrs):
            out.append(f"{prefix}lrs: repeated learning rates in {self.lrs}")
        _positive(out, self, prefix, ("steps",), optional=True)
        if self.warmup_steps is not None and self.warmup_steps < 0:
            out.append(f"{prefix}warmup_steps: expected >= 0, got {self.warmup_steps}")
        if self.lora_rank is not None and self.lora_rank < 0:
            out.append(f"{prefix}lora_rank: expected >= 0 (0 = full fine-tuning), got {self.lora_rank}")
        return out


@dataclass
class PlateauConfig(Options):
    """When a frontier run stops: its held-out target accuracy is measured at every checkpoint as it is written,
    and training ends once the best of the last ``patience`` checkpoints is less than ``min_gain`` above the best
    before them (``analysis.frontier.plateaued``), once an RL run's training reward has saturated
    (``max_zero_signal``, ``analysis.frontier.reward_saturated``), or at the arm's step budget."""

    patience: int = 3
    """Checkpoints without a gain of ``min_gain`` before a run stops (0: every run trains its whole budget)."""
    min_gain: float = 0.02
    """Accuracy gain that counts as still rising (two questions in 100)."""
    min_steps: int = 0
    """No run stops before this step."""
    max_zero_signal: float | None = None
    """RL runs: end a run at a checkpoint when, over the steps since the one before it, more than this share of the
    groups it trained on carried no reward signal on average (every completion of a group rewarded alike); the
    training reward has saturated and further steps mostly train on nothing (0.5: most of each batch).  None: off."""

    def problems(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        _finite(out, self, prefix)
        share = self.max_zero_signal
        if share is not None and share == share and not 0 <= share < 1:  # NaN is _finite's to report
            out.append(f"{prefix}max_zero_signal: expected a share in [0, 1) or null (off), got {share}")
        if self.patience < 0:
            out.append(f"{prefix}patience: expected >= 0 (0 = never stop early), got {self.patience}")
        if not 0 <= self.min_gain < 1:
            out.append(f"{prefix}min_gain: expected an accuracy gain in [0, 1), got {self.min_gain}")
        if self.min_steps < 0:
            out.append(f"{prefix}min_steps: expected >= 0, got {self.min_steps}")
        return out


RetentionKind = Literal["ratio", "kept"]
"""How a prior task's retention is read (``FrontierAnalysisConfig.retention``)."""
RETENTION_KINDS: tuple[str, ...] = get_args(RetentionKind)


@dataclass
class FrontierAnalysisConfig(Options):
    """How the frontiers are compared (``analysis/frontier.py``)."""

    levels: list[float] = field(default_factory=lambda: [0.6, 0.75, 0.9])
    """Matched target accuracies, as fractions of the gain every arm reaches (base + f x (reach - base))."""
    n_boot: int = 1000
    """Bootstrap resamples (seeds, target questions and prior prompts resampled together)."""
    target_accuracy: float | None = None
    """A practitioner's target: the cheapest configurations reaching it while keeping ``retention_floor`` (None:
    the highest matched level)."""
    retention_floor: float = 0.95
    """Least accuracy retention every prior task must keep for a configuration to count as a pick."""
    seed: int = 0
    """Seeds the bootstrap."""
    retention: RetentionKind = "ratio"
    """What a prior task keeps, the frontier's y axis: ``ratio``, the tuned model's accuracy over the base's (RL's
    Razor's prior-task score; above 1 where the tuned model answers prompts the base did not, a change of form
    often: the base's first token " the" before the answer); ``kept``, the share of the prompts the base answered
    right that the tuned model still does (forgetting only: gains count for nothing)."""

    def problems(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        _finite(out, self, prefix)
        if self.retention not in RETENTION_KINDS:
            out.append(f"{prefix}retention: expected one of {', '.join(RETENTION_KINDS)}, got {self.retention!r}")
        if not self.levels or any(not 0 < f <= 1 for f in self.levels):
            out.append(f"{prefix}levels: expected fractions in (0, 1], got {self.levels}")
        if self.n_boot < 1:
            out.append(f"{prefix}n_boot: expected a positive integer, got {self.n_boot}")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            out.append(f"{prefix}target_accuracy: expected an accuracy in (0, 1], got {self.target_accuracy}")
        if not 0 <= self.retention_floor <= 2:
            out.append(f"{prefix}retention_floor: expected a retention in [0, 2], got {self.retention_floor}")
        return out


KeepWeights = Literal["all", "last"]
"""Which checkpoints' weights a run keeps once their behaviour is measured (``FrontierConfig.keep_weights``)."""
KEEP_WEIGHTS: tuple[str, ...] = get_args(KeepWeights)


@dataclass
class FrontierConfig(Options):
    """The trade-off (``forgetlens frontier``): every arm at every learning rate and seed, each run checkpointed
    every ``checkpoint_every`` steps until its target accuracy plateaus; at every checkpoint the same evaluation
    (held-out target accuracy, each prior task per prompt, forward KL on the target and, with
    ``finetune.general_eval``, on general chat, and each base circuit's joint total change); then each arm's
    frontier and the comparison at matched accuracy."""

    model: str = "embedded"
    """Base model (as ``StudyConfig.model``)."""
    data: str | None = None
    """Target-task file or directory; None = the built-in ``finetune.synthetic_target``."""
    tasks: list[str] | None = None
    """Prior tasks (None = the model's default set)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds (``--seeds`` overrides)."""
    arms: list[FrontierArm] = field(
        default_factory=lambda: [FrontierArm("sft", [1e-3, 3e-3]), FrontierArm("rl", [3e-5, 1e-4])]
    )
    """The methods compared, each with its learning rates; differences are against the first arm."""
    max_steps: int = 160
    """Most optimizer steps of any run (an arm's ``steps`` overrides)."""
    checkpoint_every: int = 16
    """Steps between checkpoints; each is measured as it is written."""
    plateau: PlateauConfig = field(default_factory=PlateauConfig)
    """When a run stops before its budget."""
    keep_weights: KeepWeights = "all"
    """``all``: every checkpoint's weights stay on disk; ``last``: only each run's newest (a SmolLM2 checkpoint is
    0.54 GB; rows are measured before weights go)."""
    circuits: bool = True
    """Find each prior task's base circuit C0 and measure its joint total change at every checkpoint (one more
    forward of the base per task and checkpoint)."""
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(prior_per_prompt=True))
    """Options every run shares (``method``, ``seed``, ``model``, ``data``, the rate and ``steps`` are set per run);
    the evaluation is the same for every arm."""
    discovery: DiscoveryConfig = field(default_factory=lambda: DiscoveryConfig(n_examples=64))
    """How base circuits are found."""
    analysis: FrontierAnalysisConfig = field(default_factory=FrontierAnalysisConfig)
    """How the frontiers are compared."""

    def problems(self, prefix: str = "", check_paths: bool = True) -> list[str]:
        """Every problem with the frontier's options, one line each, naming the key."""
        out: list[str] = []
        _finite(out, self, "")
        _unknown_tasks(out, "tasks", self.tasks)
        if not self.seeds:
            out.append("seeds: expected at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            out.append(f"seeds: repeated seeds in {self.seeds}")
        if any(not 0 <= s < 2**31 for s in self.seeds):
            out.append(f"seeds: expected integers in [0, 2^31), got {self.seeds}")
        if len(self.arms) < 1:
            out.append("arms: expected at least one arm")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            out.append(f"arms: repeated arms in {names}; each arm is one method (with or without LoRA)")
        for i, arm in enumerate(self.arms):
            out += arm.problems(f"arms[{i}].")
        _positive(out, self, "", ("max_steps", "checkpoint_every"))
        _one_of(out, "keep_weights", self.keep_weights, KEEP_WEIGHTS, "choice")
        ft, defaults = self.finetune, FinetuneConfig()
        for name in ("method", "seed", "model", "data", "steps"):
            if getattr(ft, name) != getattr(defaults, name):
                out.append(f"finetune.{name}: set by the frontier (top-level model, data, seeds; arms; max_steps)")
        if not ft.prior_per_prompt:
            out.append("finetune.prior_per_prompt: the frontier's paired tests need it true")
        if ft.rl.max_completion_length != ft.max_new_tokens:
            out.append(
                f"finetune.rl.max_completion_length: RL's completions ({ft.rl.max_completion_length} tokens) must be "
                f"as long as the evaluation's (finetune.max_new_tokens, {ft.max_new_tokens}): every method is trained "
                "on what it is scored on"
            )
        with deferred_validation():
            out += ft.problems("finetune.")
        out += self.plateau.problems("plateau.")
        out += self.discovery.problems("discovery.")
        out += self.analysis.problems("analysis.")
        if check_paths and self.data is not None and not Path(self.data).exists():
            out.append(f"data: {self.data} does not exist; expected a SciKnowEval/SciQ file or directory")
        return out

    def problems_when_built(self) -> list[str]:
        return self.problems(check_paths=False)


REAL_MODEL_EVALUATION: dict[str, int] = {
    "prior_eval_examples": 32,
    "kl_prompts": 24,
    "kl_samples": 1,
    "kl_max_new_tokens": 24,
}
"""The behaviour evaluation ``forgetlens finetune`` uses on a real model unless told ``--full-eval``: the main
job's sizes.  The defaults (200 prompts per prior task, KL on every evaluation prompt x 4 samples) suit the
embedded model; on SmolLM2 they cost minutes per checkpoint on one core, these well under one
(``bench/evaluation.py``), with wider intervals."""


def sized_for_real_model(cfg: FinetuneConfig) -> FinetuneConfig:
    """``cfg`` with :data:`REAL_MODEL_EVALUATION`'s evaluation sizes."""
    return replace(cfg, **REAL_MODEL_EVALUATION)  # type: ignore[arg-type]  # the keys are int fields


@dataclass
class AuditConfig(Options):
    """``forgetlens audit``: tuned models made anywhere, measured against the base model's circuits
    (``pipeline/audit.py``)."""

    base: str = "embedded"
    """Base model: ``embedded``, a packaged model (``smollm2-135m``, ...), a model directory or a cached HF id."""
    tuned: list[str] = field(default_factory=list)
    """``NAME=PATH`` of a tuned model, a PEFT adapter or a ``forgetlens finetune`` run directory (repeatable;
    none: the base circuits alone)."""
    compare: list[str] = field(default_factory=lambda: ["sft:rl"])
    """Which tuned models are compared by DCV, ``FIRST:SECOND`` each: every model named FIRST (or a checkpoint of
    a run so named, ``FIRST-s0@12``) with the one named SECOND of the same seed and step; pairs without both
    models are skipped."""
    tasks: str | None = None
    """Comma-separated prior tasks (None: the base model's default tasks)."""
    method: ScoringMethod = "attribution"
    """How heads are scored, to find each base circuit and to estimate CMAP first: ``attribution``, ``ig`` or
    ``exact`` patching."""
    k: int | None = None
    """Circuit size (None: the smallest k with faithfulness >= 0.8)."""
    n_examples: int | None = None
    """Prompts per split (None: 128 on the embedded model, 32 on a real one; more narrows the intervals)."""
    top_m: int = 8
    """Heads besides the base circuit whose CMAP is patched exactly (the rest: first-order estimate)."""
    exact_everywhere: bool = False
    """Patch every head exactly (the cost grows with the head count)."""
    anatomy: bool = False
    """Also say where each tuned model's change lives: circuit (joint), other heads, MLPs, weight groups, format."""
    anatomy_metric: MetricName = "logp_answer"
    """Metric that steers the anatomy's searches (every metric is reported)."""
    own_circuits: list[DiscoveryMethod] = field(default_factory=list)
    """Also find every model's own circuit by each of these discovery methods (``dbm``: the paper's measure) on
    the discovery prompts, the base's also on each half of them (the split-half ceiling), and compare each tuned
    model's with the base's (``analysis/own_circuits.py``: retention against a permutation null, Jaccard, DBM mask
    shifts, and the necessity and sufficiency of the base DBM circuit's heads); [] = none."""
    n_boot: int = 1000
    """Bootstrap resamples of the prompts for every interval."""
    seed: int = 0
    """Seed of the prompt splits and the bootstrap."""

    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with these options, one line each."""
        out: list[str] = []
        if not self.base:
            out.append(f"{prefix}base: expected a base model, got none")
        for spec in self.tuned:
            name, sep, path = spec.partition("=")
            if not (name and sep and path):
                out.append(f"{prefix}tuned: {short_repr(spec)}: expected NAME=PATH")
        _comparisons(out, f"{prefix}compare", self.compare)
        _one_of(out, f"{prefix}method", self.method, SCORING_METHODS, "scoring method")
        _positive(out, self, prefix, ("n_boot",))
        _positive(out, self, prefix, ("k", "n_examples"), optional=True)
        if self.top_m < 0:
            out.append(f"{prefix}top_m: expected a number of heads >= 0, got {self.top_m}")
        _one_of(out, f"{prefix}anatomy_metric", self.anatomy_metric, METRIC_NAMES, "metric")
        _discovery_methods(out, f"{prefix}own_circuits", list(self.own_circuits))
        return out

    @property
    def compared(self) -> list[Comparison]:
        """The comparisons ``compare`` declares."""
        return [Comparison.parse(text) for text in self.compare]


@dataclass
class SweepConfig(Options):
    """``forgetlens sweep``: each method's learning rates tried on a seed no study uses (``pipeline/sweep.py``);
    a quick look at each rate, where ``forgetlens frontier`` is the comparison."""

    config: str | None = None
    """Study YAML whose model, data, prior tasks and finetune section every run takes (None: the embedded model's
    defaults)."""
    lrs: list[float] = field(default_factory=lambda: [1e-4, 3e-4, 1e-3, 3e-3])
    """Rates tried for both methods."""
    sft_lrs: list[float] | None = None
    """Rates tried for SFT (None: ``lrs``)."""
    rl_lrs: list[float] | None = None
    """Rates tried for RL (None: ``lrs``)."""
    seed: int = 100
    """The runs' seed (100, which no study uses, so that no rate is chosen on a study's data)."""
    jobs: int = 1
    """Worker processes, one run each."""

    def problems(self, prefix: str = "") -> list[str]:
        """Every problem with these options, one line each."""
        out: list[str] = []
        for name in ("lrs", "sft_lrs", "rl_lrs"):
            rates = getattr(self, name)
            if rates is not None and (not rates or any(not r > 0 for r in rates)):
                out.append(f"{prefix}{name}: expected positive learning rates, got {rates}")
        if self.jobs < 1:
            out.append(f"{prefix}jobs: expected at least 1, got {self.jobs}")
        return out
