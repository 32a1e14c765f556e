"""Options for each stage, as dataclasses with one docstring per field.

One config object flows through a run; the CLI fills these from its flags and
writes them beside the results (``dataclasses.asdict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


HEAD_SPARSITY = 1.5e-4
"""The shipped model's head-sparsity penalty, the same in every stage (``FormatStage.head_sparsity``).  Without it
(the model shipped before 2026-11-25) IOI's and greater-than's smallest faithful circuits took 10 and 13 of 32
heads; every penalty tried is in docs/results/embedded-model-history.md."""


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
    with exact patching (docs/results/embedded-model-history.md), so the shipped recipe does not use it."""
    head_sparsity: float = 0.0
    """Weight of an L1 penalty on the heads' contributions to the residual stream in this sub-stage: the mean over
    labelled tokens of the sum over layers and heads of |W_O,h z_h|_2 (0: none).  It pushes each task onto fewer
    heads; too strong, it also erodes multiple choice and IOI, and whether multiple choice forms varies from build
    to build (docs/results/embedded-model-history.md)."""


@dataclass
class PretrainConfig:
    """How the embedded base model is built (``forgetlens pretrain-base``)."""

    seed: int = 1
    """Seeds the corpus stream, the tokenizer corpus and the weight init.  The shipped model is build seed 1: with
    the same recipe, seed 0 never formed multiple choice (README, "Status")."""
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
    """Opening mixture.  Measured here: copying formed within ~1000 steps on repeated sequences alone (63 % copy
    accuracy) but not within 3000 steps when copying was a third of a mixed corpus (14 %).  The ``induction``
    documents repeat from the first word, and the shipped model copies by that shortcut, not by induction heads
    (README, "Status"); ``induction_span`` documents do not allow it."""
    recipe: dict[str, float] = field(default_factory=lambda: {
        "induction": 0.20,
        "ioi": 0.15,
        "greater_than": 0.10,
        "fact_recall": 0.08,
        "capital_mcq": 0.17,
        "science_statement": 0.20,
        "science_mcq": 0.05,
        "reverse_fact": 0.05,
    })
    """Corpus mixture: source name -> share of documents (see ``models/corpus.py``)."""
    format_lr: float = 1e-3
    """Learning rate of the format stages (after ``warmup`` steps of linear warm-up, then constant)."""
    format_stages: list[FormatStage] = field(default_factory=lambda: [
        FormatStage(500, {"capital_mcq": 1.0}, head_sparsity=HEAD_SPARSITY),
        FormatStage(500, {"science_mcq": 0.8, "capital_mcq": 0.2}, head_sparsity=HEAD_SPARSITY),
        FormatStage(800, {"induction": 0.2, "ioi": 0.2, "greater_than": 0.15, "fact_recall": 0.1,
                          "science_statement": 0.1, "reverse_fact": 0.05, "capital_mcq": 0.15, "science_mcq": 0.05},
                    head_sparsity=HEAD_SPARSITY),
    ])
    """Stage 3, after ``steps``: answer-format practice, one fresh optimizer for all its sub-stages.  Measured
    here: 6500 steps with multiple-choice documents as 22 % of a mixed corpus left the model at chance on them
    (letter binding never formed); capital-city questions alone formed it in ~400 steps (0.22 -> 0.79), after
    which science questions (80 %) formed it for science in ~400 more (0.25 -> 0.65); a final mixed sub-stage
    restores the prior tasks, which the format-only sub-stages erase."""

    compare_stage: FormatStage | None = field(default_factory=lambda: FormatStage(800, {
        "induction": 0.1, "ioi": 0.1, "greater_than": 0.075, "fact_recall": 0.05, "science_statement": 0.05,
        "reverse_fact": 0.025, "capital_mcq": 0.075, "science_mcq": 0.025, "compare_mcq": 0.5},
        head_sparsity=HEAD_SPARSITY))
    """Stage 4: the format stage's final mixture at half its shares plus comparison questions from the pretraining
    half (``tasks/comparisons.py``), with a fresh optimizer at ``format_lr``; ``None`` skips it.  Measured here:
    it took letter accuracy on the never-seen target half from 0.22 to 0.50 in 800 steps (at a 10 % share, at
    most 0.30 in 600), so the default target starts well above chance and still has room to learn."""

    @property
    def format_steps(self) -> int:
        return sum(stage.steps for stage in self.format_stages)


def unpenalised_pretrain_config() -> PretrainConfig:
    """The recipe of the embedded model shipped until 2026-11-25 (build seed 0, two threads, no head-sparsity
    penalty), on which the experiments recorded before then were run."""
    cfg = PretrainConfig(seed=0, threads=2, head_sparsity=0.0)
    cfg.format_stages = [FormatStage(stage.steps, stage.recipe) for stage in cfg.format_stages]
    cfg.compare_stage = FormatStage(cfg.compare_stage.steps, cfg.compare_stage.recipe)
    return cfg


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
    full_curve: bool = False
    """Evaluate faithfulness at every circuit size of the default grid (one patched forward pass each) instead of
    finding k by bisection (about log2(heads) sizes)."""
    n_examples: int = 256
    """Prompts drawn from the task."""
    batch_size: int = 64
    """Prompts per forward pass."""
    seed: int = 0
    """Seeds the task prompts."""


@dataclass
class RLConfig:
    """GRPO-family settings (TRL ``GRPOConfig``); defaults follow the study: Dr.GRPO, no KL penalty."""

    loss_type: str = "dr_grpo"
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
    scale_rewards: str = "none"
    """Advantage scaling by the group's reward std: ``none`` (Dr.GRPO), ``group`` or ``batch``."""
    format_reward: float = 0.0
    """Weight of an extra reward for answering with a bare letter (0 = off)."""
    use_vllm: bool = False
    """Generate with vLLM when installed (GPU runs); plain ``generate`` otherwise."""


@dataclass
class PreserveConfig:
    """Circuit preservation (``sft-preserve``, ``rl-preserve``): the loss plus
    lam * sum over protected heads h of ||a_theta(h) - a_0(h)||^2 on prior-task prompts (o_proj inputs; the base
    activations are computed once)."""

    lam: float = 1.0
    """lambda, the weight of the penalty (>= 0)."""
    heads: str = "circuit"
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


@dataclass
class ReplayConfig:
    """Replay (``replay``): SFT's loss plus weight * next-token loss on prior-task documents."""

    weight: float = 1.0
    """Weight of the replay loss (>= 0); 1 = as if the documents were mixed into the batch one for one."""
    documents_per_step: int = 8
    """Prior-task documents per optimizer step."""
    tasks: list[str] | None = None
    """Prior tasks replayed (None = ``prior_tasks``)."""


@dataclass
class MonitorConfig:
    """``CircuitMonitor`` during training (``training/monitor.py``)."""

    every: int = 0
    """Measure every N optimizer steps (0 = off)."""
    tasks: list[str] | None = None
    """Prior tasks watched (None = ``prior_tasks``)."""
    n_prompts: int = 32
    """Fixed prompts per task."""
    threshold: float | None = None
    """Faithfulness retention below which ``action`` happens (None = never)."""
    action: str = "warn"
    """``warn`` or ``stop`` (end training at that step)."""


SYNTHETIC_TARGETS = ("compare", "compare-short", "facts")
"""Built-in target tasks (``FinetuneConfig.synthetic_target``)."""

METHODS = ("sft", "rl", "sft-preserve", "rl-preserve", "replay", "sft-kl")
"""Fine-tuning methods (``FinetuneConfig.method``)."""


def trainer_kind(method: str) -> str:
    """``rl`` for the GRPO-family methods, ``sft`` for the supervised ones."""
    return "rl" if method.startswith("rl") else "sft"


@dataclass
class FinetuneConfig:
    """One fine-tuning run (``forgetlens finetune``); SFT and RL runs share everything but ``method``."""

    method: str = "sft"
    """``sft``, ``rl``, ``sft-preserve``, ``rl-preserve``, ``replay`` (SFT + prior-task replay) or ``sft-kl``
    (SFT + KL to the base)."""
    model: str = "embedded"
    """Base model: ``embedded``, a local directory or a cached HF id."""
    data: str | None = None
    """Target-task file or directory (SciKnowEval/SciQ); None = the built-in ``synthetic_target``."""
    synthetic_target: str = "compare"
    """Built-in target when ``data`` is None: ``compare`` (which of four quantities is the largest / smallest,
    on the half of the comparisons the embedded model never practised; ``tasks/comparisons.py``),
    ``compare-short`` (the same questions without options, answered with the value and unit) or ``facts``
    (element symbols and SI units from the table the embedded model read as statements; ``tasks/science_qa.py``).
    Measured on the embedded model before it had the comparison stage: ``facts`` started at 0.44 and neither
    method raised it clearly in 120 steps."""
    seed: int = 0
    """Seeds the data split, the option order, the sampler and the weights' updates."""
    steps: int = 480
    """Optimizer steps (the same for both methods: matched budget)."""
    prompts_per_step: int = 8
    """Distinct training prompts per optimizer step (RL samples ``num_generations`` completions of each)."""
    lr_sft: float = 3e-3
    """SFT learning rate (chosen by ``experiments/lr_sweep.py``'s rule on the embedded default: 1e-4, 3e-4, 1e-3,
    3e-3 reached 0.667, 0.706, 0.738, 0.937 from 0.579 at seed 100, 480 steps; 3e-3 also erased every prior task,
    mean retention 0.000)."""
    lr_rl: float = 1e-4
    """RL learning rate (chosen by ``experiments/lr_sweep.py``'s rule on the embedded default: 1e-4, 3e-4 reached
    0.563, 0.516 from 0.579 at seed 100, 480 steps)."""
    checkpoint_every: int = 120
    """Save a checkpoint every N steps (plus step 0, the base model); each one's behaviour is measured."""
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
    kl_samples: int = 4
    """Completions sampled from the base model per evaluation prompt for the forward-KL estimate."""
    kl_prompts: int | None = None
    """Evaluation prompts the forward-KL estimate uses: the first N of the evaluation split (None = all)."""
    kl_max_new_tokens: int | None = None
    """Length cap of the sampled base completions the forward KL is summed over (None = ``max_new_tokens``).
    A completion ends at the end-of-turn token; a cap that cuts it sums the KL of its first tokens only (a lower
    bound on the whole completion's KL); ``behaviour.json`` records the share of samples cut."""
    general_eval: bool = False
    """Also measure off-task behaviour at every checkpoint (``tasks/general.py``): forward KL to the base on
    built-in general chat prompts (one base completion of up to ``chat_kl_tokens`` tokens each) and accuracy on
    general-knowledge questions (capitals, element symbols, SI units; the option whose text is likeliest as the
    reply, ``metrics/behaviour.option_choices``)."""
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


@dataclass
class BenchmarkConfig:
    """Standard benchmarks through lm-evaluation-harness (optional; see ``metrics/benchmarks.py``)."""

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
class StudyConfig:
    """The whole study (``forgetlens run``): base circuits, SFT and RL runs, circuit metrics, report."""

    model: str = "embedded"
    """Base model: ``embedded``, a local directory or a cached HF id."""
    data: str | None = None
    """Target-task file or directory (SciKnowEval/SciQ); None = the built-in ``finetune.synthetic_target``."""
    tasks: list[str] | None = None
    """Prior-capability tasks whose circuits are followed (None = the model's default set: for the embedded model
    copying, ioi, greater_than, fact_recall; for other models induction, ioi, greater_than_year, fact_recall;
    ``forgetlens tasks`` lists all)."""
    methods: list[str] = field(default_factory=lambda: ["sft", "rl"])
    """Fine-tuning methods, each run once per seed."""
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
    other heads of largest estimated |effect|, M = this (``circuits/first_order_cmap.py``).  V(C0) and DCV(C0)
    come from exact values.  None patches every head exactly (one forward pass per head and prompt chunk)."""
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(checkpoint_every=160))
    """Fine-tuning options shared by all runs (``method``, ``seed``, ``model``, ``data`` are set by the study);
    checkpoints every 160 steps (3 besides the base) keep the per-checkpoint circuit measurements within the CPU
    budget."""
    benchmarks: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    """Standard benchmarks on the base model and every run's last checkpoint (needs lm-eval; off by default)."""
    discovery: DiscoveryConfig = field(default_factory=lambda: DiscoveryConfig(n_examples=128))
    """How base circuits are found; ``n_examples`` prompts each for discovery and for evaluation."""


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_value(value, hint, key: str, errors: list[str]):
    """``value`` converted to ``hint`` (a dataclass, list, dict, optional or scalar), or None with an error."""
    import dataclasses
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_value(value, inner, key, errors)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping, got {value!r}")
            return None
        return _from_mapping(hint, value, key + ".", errors)
    if origin is list:
        if not isinstance(value, list):
            errors.append(f"{key}: expected a list of {_type_name(args[0])}, got {value!r}")
            return None
        return [_check_value(v, args[0], f"{key}[{i}]", errors) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping, got {value!r}")
            return None
        return {str(k): _check_value(v, args[1], f"{key}.{k}", errors) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        errors.append(f"{key}: expected {_type_name(hint)}, got {value!r}")
        return None
    return value


def _from_mapping(cls, data: dict, prefix: str, errors: list[str], default=None):
    """``default`` (``cls()`` if None) with the keys of ``data`` replaced; a nested section starts from the
    enclosing default's value, so ``finetune: {kl_coef: 0.2}`` keeps StudyConfig's own finetune defaults."""
    import dataclasses
    import typing

    default = cls() if default is None else default
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            errors.append(f"{prefix}{key}: unknown key; known: {', '.join(sorted(names))}")
    values = {}
    for k, v in data.items():
        if k not in names:
            continue
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
            values[k] = _from_mapping(hints[k], v, prefix + k + ".", errors, getattr(default, k))
        else:
            values[k] = _check_value(v, hints[k], prefix + k, errors)
    return dataclasses.replace(default, **{k: v for k, v in values.items() if v is not None or data[k] is None})


def config_from_mapping(cls, data: dict, source: str, semantic_check=None):
    """Build dataclass ``cls`` from nested ``data``; every problem is reported, one per line.

    Unknown keys and wrong types are collected first (a bad value falls back to its default), then
    ``semantic_check(cfg)`` (returning a list of problems) runs on the result, so one pass lists them all.
    """
    from forgetlens.errors import ForgetlensError

    errors: list[str] = []
    if not isinstance(data, dict):
        raise ForgetlensError(f"{source}: expected a mapping of options at the top level")
    cfg = _from_mapping(cls, data, "", errors)
    if semantic_check is not None:
        errors += semantic_check(cfg)
    if errors:
        raise ForgetlensError("\n".join(f"{source}: {e}" for e in errors))
    return cfg


def load_study_config(path, check_paths: bool = True) -> StudyConfig:
    """Read and validate a study YAML file; every problem is reported, one line each, naming the key.

    ``check_paths=False`` skips checking that ``data`` exists (``forgetlens plan`` needs no data).
    """
    from pathlib import Path

    import yaml

    from forgetlens.errors import ForgetlensError

    path = Path(path)
    if not path.is_file():
        raise ForgetlensError(f"--config: {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ForgetlensError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    from forgetlens.study import study_problems

    return config_from_mapping(StudyConfig, data, str(path), lambda cfg: study_problems(cfg, check_paths))
