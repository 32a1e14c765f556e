"""``forgetlens plan``: memory per GPU and forward/backward passes of every stage, before spending anything.

The formulas are in ``docs/plan.md``; every number printed comes from :func:`estimate` and can be read
back from its ``StagePlan`` rows.  Only the model's config is read (the weights are never loaded), so a plan
for Qwen2.5-3B needs its config.json on disk or one of the published shapes in ``KNOWN_CONFIGS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from forgetlens.circuits.circuit import default_ks
from forgetlens.config.methods import finetune_method
from forgetlens.config.options import StudyConfig
from forgetlens.errors import ForgetlensError
from forgetlens.targets.general import CHAT_PROMPTS, general_knowledge_records

GIB = 2**30

KNOWN_CONFIGS: dict[str, dict] = {
    # From the model's config.json on the Hugging Face hub (Qwen/Qwen2.5-3B-Instruct), so that a plan can be
    # made before the weights are downloaded.
    "Qwen/Qwen2.5-3B-Instruct": dict(
        model_type="qwen2",
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
    ),
}


@dataclass(frozen=True)
class ModelShape:
    """What the memory formulas need to know about a model."""

    name: str
    n_params: int
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_ff: int
    vocab: int


@dataclass(frozen=True)
class Hardware:
    """GPUs the plan is for."""

    n_gpus: int
    gib_per_gpu: float

    @classmethod
    def parse(cls, text: str) -> Hardware:
        """``"8x80"`` -> 8 GPUs of 80 GiB each (a ForgetlensError naming ``--gpus`` otherwise)."""
        count, sep, size = text.lower().partition("x")
        try:
            hw = cls(int(count), float(size)) if sep else None
        except ValueError:
            hw = None
        if hw is None or hw.n_gpus < 1 or hw.gib_per_gpu <= 0:
            raise ForgetlensError(f"--gpus {text!r}: expected COUNTxGIB, e.g. 1x80 or 8x80")
        return hw

    def __str__(self) -> str:
        return f"{self.n_gpus} x {self.gib_per_gpu:g} GiB"


@dataclass(frozen=True)
class Setting:
    """The knobs that decide whether training fits."""

    zero_stage: int = 0
    """DeepSpeed ZeRO stage (0 = plain data parallel)."""
    lora_rank: int = 0
    """LoRA rank (0 = full fine-tuning)."""
    micro_batch: int | None = None
    """Sequences per forward/backward pass per GPU (SFT: prompts, RL: completions); None = a whole step's
    share of the GPU in one pass, as ``finetune.micro_batch: null`` trains."""

    def __str__(self) -> str:
        parts = [
            f"ZeRO-{self.zero_stage}" if self.zero_stage else "no ZeRO",
            f"LoRA r={self.lora_rank}" if self.lora_rank else "full fine-tuning",
            f"micro-batch {self.micro_batch}" if self.micro_batch else "whole step per pass",
        ]
        return ", ".join(parts)


@dataclass
class StagePlan:
    """One stage's estimate: memory per GPU split into parts, and how many passes it makes."""

    stage: str
    parts: dict[str, float]  # name -> bytes per GPU
    passes: dict[str, int]  # "forward" / "backward" / "generated tokens" -> count (whole stage, all GPUs)

    @property
    def total(self) -> float:
        return sum(self.parts.values())


def model_shape(spec: str) -> ModelShape:
    """The shape of ``spec`` from its config alone (local directory, HF cache, or ``KNOWN_CONFIGS``)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from forgetlens.models.heads import HeadLayout
    from forgetlens.models.loading import resolve_model_path

    if spec in KNOWN_CONFIGS:
        try:
            config = AutoConfig.from_pretrained(
                resolve_model_path(spec), local_files_only=True, trust_remote_code=False
            )
        except (OSError, ForgetlensError):
            known = dict(KNOWN_CONFIGS[spec])
            config = AutoConfig.for_model(known.pop("model_type"), **known)
    else:
        try:
            config = AutoConfig.from_pretrained(
                resolve_model_path(spec), local_files_only=True, trust_remote_code=False
            )
        except OSError as exc:
            raise ForgetlensError(
                f"model {spec}: no config.json on disk ({str(exc).splitlines()[0]}); "
                f"give a local model directory or download the model first"
            ) from None
    with torch.device("meta"):  # parameters without memory: the exact count for any architecture
        model = AutoModelForCausalLM.from_config(config)
    layout = HeadLayout.of(model)
    n_kv = getattr(config, "num_key_value_heads", None) or layout.n_heads
    d_model = getattr(config, "hidden_size", None) or config.n_embd
    d_ff = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d_model
    return ModelShape(
        spec,
        sum(p.numel() for p in model.parameters()),
        layout.n_layers,
        d_model,
        layout.n_heads,
        n_kv,
        layout.d_head,
        d_ff,
        config.vocab_size,
    )


def lora_params(shape: ModelShape, rank: int) -> int:
    """Trainable parameters of LoRA on every linear layer of every block: r (d_in + d_out) per matrix.

    Counted for q, k, v, o and a gated MLP (gate, up, down); GPT-2's two-matrix MLP is over-counted by one.
    """
    d, q, kv = shape.d_model, shape.n_heads * shape.d_head, shape.n_kv_heads * shape.d_head
    attn = 2 * (d + q) + 2 * (d + kv)
    mlp = 3 * (d + shape.d_ff)
    return rank * shape.n_layers * (attn + mlp)


def _training_parts(
    shape: ModelShape,
    cfg: StudyConfig,
    hw: Hardware,
    s: Setting,
    seq: int,
    logit_tokens: int,
    act_bytes: int,
    sequences_per_step: int,
) -> dict[str, float]:
    """Bytes per GPU of one training process (formulas: docs/plan.md, "Training")."""
    n, g = shape.n_params, hw.n_gpus
    if s.lora_rank:
        trainable = lora_params(shape, s.lora_rank)
        weights: float = n * act_bytes + trainable * 4
        states: float = trainable * 12  # fp32 gradients and two Adam moments of the adapters
    else:
        trainable = n
        weights = n * 4  # fp32 master weights (bf16 runs compute in autocast)
        grads, moments = n * 4, n * 8
        if s.zero_stage >= 3:
            weights /= g
        states = (grads / g if s.zero_stage >= 2 else grads) + (moments / g if s.zero_stage >= 1 else moments)
    b = min(s.micro_batch or math.ceil(sequences_per_step / g), math.ceil(sequences_per_step / g))
    d, layers = shape.d_model, shape.n_layers
    per_layer = b * seq * (34 * d) * act_bytes / 2  # Korthikanti et al. 2022, sbh*34 bytes in 16-bit, no scores
    stored = (
        (layers * b * seq * d * act_bytes + per_layer) if cfg.finetune.gradient_checkpointing else layers * per_layer
    )
    logits = b * logit_tokens * shape.vocab * 4 * 3  # fp32 logits, their log-softmax and its gradient
    return {"weights": weights, "gradients + optimizer": states, "activations": stored, "logits": logits}


def estimate(
    cfg: StudyConfig, shape: ModelShape, hw: Hardware, setting: Setting | None = None, prompt_tokens: int = 512
) -> list[StagePlan]:
    """Every stage's memory per GPU and pass counts for ``cfg`` on ``hw`` (``setting`` defaults to cfg's own)."""
    ft, rl, disc = cfg.finetune, cfg.finetune.rl, cfg.discovery
    s = setting or Setting(zero_stage=0, lora_rank=ft.lora_rank, micro_batch=ft.micro_batch)
    act = 2 if ft.bf16 else 4
    n_runs = len(cfg.seeds) * (len(cfg.methods) + len(cfg.sft_lr_grid))
    n_ckpt = math.ceil(ft.steps / ft.checkpoint_every)
    n_tasks = len(cfg.tasks) if cfg.tasks else 4
    heads = shape.n_layers * shape.n_heads
    task_tokens = 64  # prior-task prompts are short sentences
    n_disc = disc.n_examples

    # circuits, per task and prompt (docs/plan.md): discovery = attribution (2 forward, 1 backward), whose corrupted
    # run is the ablation source, + m(empty) + one patched forward per circuit size (bisection, or every size of
    # the grid with full_curve); base measurement = attribution + circuit/empty
    if disc.k is not None:
        n_ks = 1
    elif disc.full_curve:
        n_ks = len(default_ks(heads))
    else:
        n_ks = math.ceil(math.log2(heads + 1))
    infer_weights = shape.n_params * 4  # measurement loads models in fp32
    graph = disc.batch_size * task_tokens * shape.d_model * 4 * 34 / 2 * shape.n_layers
    head_outputs = 3 * shape.n_layers * disc.batch_size * task_tokens * shape.n_heads * shape.d_head * 4
    circuits = StagePlan(
        "circuits",
        {"weights": infer_weights, "activations (attribution graph)": graph, "head outputs": head_outputs},
        {"forward": n_tasks * n_disc * ((2 + 1 + n_ks) + (2 + 2)), "backward": n_tasks * n_disc * 2},
    )

    seq = prompt_tokens + rl.max_completion_length
    sft = StagePlan(
        "finetune: sft",
        _training_parts(shape, cfg, hw, s, seq, seq, act, ft.prompts_per_step),
        {"forward": ft.steps * ft.prompts_per_step, "backward": ft.steps * ft.prompts_per_step},
    )
    rl_parts = _training_parts(
        shape, cfg, hw, s, seq, rl.max_completion_length, act, ft.prompts_per_step * rl.num_generations
    )
    gen_batch = ft.prompts_per_step * rl.num_generations / hw.n_gpus
    rl_parts["generation KV cache"] = 2 * shape.n_layers * shape.n_kv_heads * shape.d_head * seq * gen_batch * act
    if rl.beta > 0:
        rl_parts["reference model"] = shape.n_params * act
    completions = ft.steps * ft.prompts_per_step * rl.num_generations
    rl_plan = StagePlan(
        "finetune: rl",
        rl_parts,
        {
            "forward": completions * (2 if rl.beta > 0 else 1),
            "backward": completions,
            "generated tokens": completions * rl.max_completion_length,
        },
    )
    # behaviour at each checkpoint: base and tuned model, greedy answers, KL samples, prior tasks
    n_eval = 500  # evaluation questions assumed when the data is not read
    n_kl = min(n_eval, ft.kl_prompts or n_eval) * ft.kl_samples
    kl_tokens = ft.kl_max_new_tokens or ft.max_new_tokens
    n_chat, n_knowledge = (len(CHAT_PROMPTS), len(general_knowledge_records())) if ft.general_eval else (0, 0)
    behaviour = StagePlan(
        "behaviour (per run)",
        {"weights (base + tuned)": 2 * infer_weights, "logits (KL batch)": 32 * kl_tokens * shape.vocab * 4 * 4},
        {
            "forward": (n_ckpt + 1) * (n_kl * 2 + n_tasks * ft.prior_eval_examples + n_chat * 2 + n_knowledge),
            "generated tokens": (n_ckpt + 1) * n_eval * ft.max_new_tokens
            + n_kl * kl_tokens
            + n_chat * ft.chat_kl_tokens,
        },
    )
    # per checkpoint and task: attribution (2 forward, 1 backward) + circuit/empty + the tuned attention on the base
    # stream (~1) + one patched run per exactly patched head (C0 + top-M, or every head), for local and total CMAP;
    # the base's forward and backward for first-order CMAP once per task
    exact_heads = heads if cfg.cmap_top_m is None else min(heads, 8 + cfg.cmap_top_m)  # |C0| taken as 8
    cmap_passes = 1 + exact_heads * (2 if cfg.total_cmap else 1)
    measure = StagePlan(
        "measure",
        {
            "weights (base + tuned)": 2 * infer_weights,
            "activations (attribution graph)": graph,
            "head outputs": head_outputs,
        },
        {
            "forward": n_runs * n_ckpt * n_tasks * n_disc * (2 + 2 + cmap_passes) + n_tasks * n_disc,
            "backward": n_runs * n_ckpt * n_tasks * n_disc + n_tasks * n_disc,
        },
    )
    trainers = [finetune_method(m).trainer for m in cfg.methods]
    n_sft = len(cfg.seeds) * (trainers.count("sft") + len(cfg.sft_lr_grid))
    n_rl = len(cfg.seeds) * trainers.count("rl")
    sft.passes = {k: v * n_sft for k, v in sft.passes.items()}  # every SFT-kind run (and the grid) x seeds
    rl_plan.passes = {k: v * n_rl for k, v in rl_plan.passes.items()}
    return [circuits] + [sft] * (n_sft > 0) + [rl_plan] * (n_rl > 0) + [behaviour, measure]


def fitting_settings(cfg: StudyConfig, shape: ModelShape, hw: Hardware, prompt_tokens: int) -> list[Setting]:
    """Settings whose training stages fit ``hw`` with 10 % headroom, cheapest change first."""
    budget = hw.gib_per_gpu * GIB * 0.9
    out = []
    for lora in (0, 16, 64):
        for zero in (0, 1, 2, 3):
            if lora and zero:
                continue  # LoRA's optimizer state is small: ZeRO buys nothing worth listing
            for micro in (16, 8, 4, 2, 1):
                s = Setting(zero, lora, micro)
                train = [p for p in estimate(cfg, shape, hw, s, prompt_tokens) if p.stage.startswith("finetune")]
                if all(p.total <= budget for p in train):
                    out.append(s)
                    break
    return out


def _size(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.1f} GiB" if n_bytes >= GIB / 2 else f"{n_bytes / 2**20:.1f} MiB"


def format_plan(cfg: StudyConfig, shape: ModelShape, hw: Hardware, prompt_tokens: int, source: str) -> str:
    """The printed plan for one hardware setting."""
    size = f"{shape.n_params / 1e9:.2f} B" if shape.n_params >= 1e8 else f"{shape.n_params / 1e6:.2f} M"
    lines = [
        f"plan for {shape.name} ({size} parameters, {shape.n_layers} layers x {shape.n_heads} heads) on {hw}",
        f"  prompt length {prompt_tokens} tokens ({source}); "
        f"completion {cfg.finetune.rl.max_completion_length}; {'bf16' if cfg.finetune.bf16 else 'fp32'}; "
        f"gradient checkpointing {'on' if cfg.finetune.gradient_checkpointing else 'off'}",
    ]
    plans = estimate(cfg, shape, hw, None, prompt_tokens)
    own = Setting(0, cfg.finetune.lora_rank, cfg.finetune.micro_batch)
    lines.append(f"  as configured ({own}):")
    lines.append(f"  {'stage':<22}{'per GPU':>10}  {'fits':<5} parts; passes count sequences (prompts or completions)")
    for p in plans:
        fits = "yes" if p.total <= hw.gib_per_gpu * GIB * 0.9 else "NO"
        parts = ", ".join(f"{k} {_size(v)}" for k, v in p.parts.items())
        passes = ", ".join(f"{k} {v:,}" for k, v in p.passes.items())
        lines.append(f"  {p.stage:<22}{_size(p.total):>10}  {fits:<5} {parts}")
        lines.append(f"  {'':<22}{'':>10}  {'':<5} passes: {passes}")
    fitting = fitting_settings(cfg, shape, hw, prompt_tokens)
    if fitting:
        lines.append(
            "  training fits with (first setting per LoRA rank and ZeRO stage, largest micro-batch that fits):"
        )
        lines += [f"    - {s}" for s in fitting]
    else:
        lines.append("  training does not fit on this hardware at micro-batch 1 with ZeRO-3 or LoRA r=16/64")
    return "\n".join(lines)


def detected_hardware() -> Hardware:
    """The GPUs torch sees (count and the smallest one's memory); a clear error when there are none."""
    import torch

    if not torch.cuda.is_available():
        raise ForgetlensError("no GPU detected; give the hardware to plan for with --gpus COUNTxGIB (e.g. 1x80)")
    sizes = [torch.cuda.get_device_properties(i).total_memory / GIB for i in range(torch.cuda.device_count())]
    return Hardware(len(sizes), min(sizes))


def prompt_length(cfg: StudyConfig) -> tuple[int, str]:
    """(longest training prompt in tokens, where the figure came from): measured with the model's chat template
    when the tokenizer and data are on disk, else 512 (assumed)."""
    import dataclasses as dc

    from forgetlens.measure.behaviour import chat_prompts
    from forgetlens.training.data import target_splits

    try:
        from transformers import AutoTokenizer

        from forgetlens.models.loading import resolve_model_path

        tokenizer = AutoTokenizer.from_pretrained(
            resolve_model_path(cfg.model), local_files_only=True, trust_remote_code=False
        )
        train, _ = target_splits(dc.replace(cfg.finetune, model=cfg.model, data=cfg.data))
    except (OSError, ForgetlensError, ValueError):
        return 512, "assumed: tokenizer or data not on disk"
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in chat_prompts(tokenizer, train)]
    return max(lengths), f"longest of {len(lengths)} training prompts"
