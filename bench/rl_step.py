"""One RL (Dr.GRPO) step against its floor: the step's FLOPs counted from its real token counts, over this
machine's matmul throughput at the step's shapes, float32 and bf16 side by side.

    python bench/rl_step.py [--config STUDY_OR_FRONTIER.yaml] [--steps 3] [--precisions fp32,bf16] [--threads 1]

Trains ``--steps`` RL steps of the config's first RL run (a frontier's first RL arm at its first rate; a study's
``rl`` run; default: the embedded model's defaults) once per precision (``bf16``: ``FinetuneConfig.bf16``, torch
autocast with float32 master weights), timing each stage of every step after the first: generation
(``_generate_single_turn``), the loss pass's forward (``_get_per_token_logps_and_entropies``), the backward and the
optimizer step. From the tokens each step really had (distinct prompts, their shared prefix, every completion's
length) it counts the matmul FLOPs of each stage (``step_flops``): prefill and decode; the loss forward over each
distinct prompt once and every completion token; the backward as twice the forward. The floor of a stage is its
FLOPs over the throughput of a [tokens x d_model] @ [d_model x d_ff] matmul and the unembedding's
[tokens x d_model] @ [d_model x vocab], measured here in the same run in float32 and in bf16; ratio = measured /
floor (float32 floor for the float32 step, bf16 floor for the bf16 step).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml


@dataclass
class Shape:
    """What the FLOP count needs of a decoder: widths and depth."""

    d_model: int
    d_ff: int
    n_layers: int
    n_heads: int
    n_kv: int
    d_head: int
    vocab: int

    @classmethod
    def of(cls, model) -> Shape:
        c = model.config.get_text_config()
        d_head = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        return cls(
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            getattr(c, "num_key_value_heads", c.num_attention_heads),
            d_head,
            c.vocab_size,
        )

    def body_per_token(self, context: float) -> float:
        """Matmul FLOPs of one token through every layer attending to ``context`` positions (no unembedding)."""
        q_o = 2 * 2 * self.d_model * self.n_heads * self.d_head
        k_v = 2 * 2 * self.d_model * self.n_kv * self.d_head
        mlp = 2 * 3 * self.d_model * self.d_ff  # gate, up, down
        attention = 2 * 2 * context * self.n_heads * self.d_head  # scores and the weighted sum
        return self.n_layers * (q_o + k_v + mlp + attention)

    @property
    def head_per_token(self) -> float:
        return 2 * self.d_model * self.vocab


@dataclass
class StepTokens:
    """The tokens of one RL step, as it happened."""

    prompts: list[int] = field(default_factory=list)  # each distinct prompt's length
    shared_prefix: int = 0  # tokens every prompt of the batch starts with (prefilled once)
    completions: list[int] = field(default_factory=list)  # each completion's length


def step_flops(shape: Shape, tokens: StepTokens) -> dict[str, float]:
    """{stage: matmul FLOPs} of one RL step with these tokens (shared prefill and shared-prompt scoring)."""
    rows = len(tokens.completions)
    prefill = shape.body_per_token(tokens.shared_prefix / 2) * tokens.shared_prefix
    for p in tokens.prompts:
        suffix = p - tokens.shared_prefix
        prefill += suffix * shape.body_per_token(tokens.shared_prefix + suffix / 2) + shape.head_per_token
    decode_steps = max(tokens.completions, default=0)
    mean_prompt = statistics.mean(tokens.prompts) if tokens.prompts else 0
    decode = sum(
        rows * (shape.body_per_token(mean_prompt + t) + shape.head_per_token) for t in range(max(decode_steps - 1, 0))
    )
    forward = sum(p * shape.body_per_token(p / 2) for p in tokens.prompts)
    forward += sum(c * (shape.body_per_token(mean_prompt + c / 2) + shape.head_per_token) for c in tokens.completions)
    return {"generation": prefill + decode, "loss forward": forward, "backward": 2 * forward}


def matmul_throughput(shape: Shape, tokens: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """FLOP/s of this machine on the step's two matmul shapes (MLP and unembedding), their FLOP-weighted mean."""
    total_flops, total_seconds = 0.0, 0.0
    for n_out in (shape.d_ff, shape.vocab):
        a, b = torch.randn(tokens, shape.d_model, dtype=dtype), torch.randn(shape.d_model, n_out, dtype=dtype)
        a @ b  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        total_flops += 2 * tokens * shape.d_model * n_out
        total_seconds += statistics.median(times)
    return total_flops / total_seconds


def rl_config(path: str | None):
    """The first RL run's FinetuneConfig of a frontier or study YAML (the embedded defaults without one)."""
    from forgetlens.config.options import FinetuneConfig

    if path is None:
        return FinetuneConfig(method="rl")
    data = yaml.safe_load(Path(path).read_text())
    if "arms" in data:
        from forgetlens.config.loading import load_frontier_config
        from forgetlens.pipeline.frontier import frontier_runs

        runs = frontier_runs(load_frontier_config(path))
        return next(cfg for cfg in runs.values() if cfg.method == "rl")
    from forgetlens.config.loading import load_study_config
    from forgetlens.pipeline.study import run_configs

    study = load_study_config(path)
    return run_configs(study)[f"rl-s{study.seeds[0]}"]


def timed_steps(cfg, steps: int, bf16: bool, threads: int) -> tuple[list[dict[str, float]], list[StepTokens], Shape]:
    """Train ``steps`` RL steps; per step (the first excluded) each stage's seconds and the step's tokens."""
    import dataclasses

    from datasets import Dataset

    from forgetlens.models.loading import configure_threads, load_model
    from forgetlens.training.data import conversational_rows, target_splits, training_schedule
    from forgetlens.training.rollouts import common_prefix
    from forgetlens.training.trainers import build_rl_trainer

    cfg = dataclasses.replace(cfg, steps=steps, checkpoint_every=10 * steps, bf16=bf16)
    loaded = load_model(cfg.model)
    configure_threads(loaded.model, threads)
    train, _ = target_splits(cfg)
    dataset = Dataset.from_list(conversational_rows(training_schedule(train, cfg), with_completion=False))
    loaded.model.train()
    seconds: list[dict[str, float]] = []
    tokens: list[StepTokens] = []
    current: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_rl_trainer(loaded.model, loaded.tokenizer, dataset, cfg, Path(tmp))

        def timer(name, fn):
            def wrapped(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    current[name] = current.get(name, 0.0) + time.perf_counter() - start

            return wrapped

        generate = trainer._generate_single_turn

        def generation(prompt_ids, *args, **kwargs):
            completions, logprobs = timer("generation", generate)(prompt_ids, *args, **kwargs)
            distinct = list(dict.fromkeys(tuple(p) for p in prompt_ids))
            tokens.append(
                StepTokens(
                    [len(p) for p in distinct],
                    common_prefix([list(p) for p in distinct]),
                    [len(c) for c in completions],
                )
            )
            return completions, logprobs

        trainer._generate_single_turn = generation
        trainer._get_per_token_logps_and_entropies = timer("loss forward", trainer._get_per_token_logps_and_entropies)
        trainer.accelerator.backward = timer("backward", trainer.accelerator.backward)
        from transformers import TrainerCallback

        class Steps(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                current.clear()
                current["_start"] = time.perf_counter()

            def on_pre_optimizer_step(self, args, state, control, **kwargs):
                current["_optimizer"] = time.perf_counter()

            def on_optimizer_step(self, args, state, control, **kwargs):
                current["optimizer step"] = time.perf_counter() - current["_optimizer"]

            def on_step_end(self, args, state, control, **kwargs):
                end = time.perf_counter()
                row = {k: v for k, v in current.items() if not k.startswith("_")}
                row["whole step"] = end - current["_start"]
                seconds.append(row)

        trainer.add_callback(Steps())
        trainer.train()
    return seconds[1:], tokens[1:], Shape.of(loaded.model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a frontier or study YAML (default: the embedded model's defaults)")
    parser.add_argument("--steps", type=int, default=3, help="steps trained per precision (the first is not timed)")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = rl_config(args.config)
    print(
        f"RL step of {args.config or 'the embedded defaults'}: {cfg.model}, {cfg.prompts_per_step} prompts x "
        f"{cfg.rl.num_generations} completions of <= {cfg.rl.max_completion_length} tokens, {args.threads} thread(s)"
    )
    for precision in args.precisions.split(","):
        seconds, tokens, shape = timed_steps(cfg, args.steps, precision == "bf16", args.threads)
        mean_tokens = sum(len(t.prompts) * statistics.mean(t.prompts) + sum(t.completions) for t in tokens) / len(
            tokens
        )
        rates = {
            name: matmul_throughput(shape, int(mean_tokens), dtype)
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
        }
        flops = [step_flops(shape, t) for t in tokens]
        n_prompts = statistics.mean(len(t.prompts) for t in tokens)
        prompt_len = statistics.mean(statistics.mean(t.prompts) for t in tokens)
        prefix = statistics.mean(t.shared_prefix for t in tokens)
        completion = statistics.mean(statistics.mean(t.completions) for t in tokens)
        print(
            f"\n{precision}: {len(seconds)} timed steps; matmul throughput here fp32 {rates['fp32'] / 1e9:.0f} "
            f"GFLOP/s, bf16 {rates['bf16'] / 1e9:.0f} GFLOP/s; prompts {n_prompts:.0f} x {prompt_len:.0f} tokens "
            f"(shared prefix {prefix:.0f}), completions {completion:.1f} tokens"
        )
        own = rates[precision]
        print(
            f"{'stage':<16}{'s / step':>10}{'GFLOP':>9}{'floor s':>9}{'ratio':>7}{'fp32 floor':>12}{'bf16 floor':>12}"
        )
        total_floor = {"fp32": 0.0, "bf16": 0.0, "own": 0.0}
        for stage in ("generation", "loss forward", "backward"):
            s = statistics.mean(row.get(stage, 0.0) for row in seconds)
            f = statistics.mean(fl[stage] for fl in flops)
            floors = {name: f / rate for name, rate in rates.items()}
            total_floor["own"] += f / own
            for name in ("fp32", "bf16"):
                total_floor[name] += floors[name]
            print(
                f"{stage:<16}{s:>10.2f}{f / 1e9:>9.0f}{f / own:>9.2f}{s / (f / own):>6.2f}x"
                f"{floors['fp32']:>12.2f}{floors['bf16']:>12.2f}"
            )
        opt = statistics.mean(row.get("optimizer step", 0.0) for row in seconds)
        whole = statistics.mean(row["whole step"] for row in seconds)
        print(f"{'optimizer step':<16}{opt:>10.2f}")
        print(
            f"{'whole step':<16}{whole:>10.2f}{'':>9}{total_floor['own']:>9.2f}{whole / total_floor['own']:>6.2f}x"
            f"{total_floor['fp32']:>12.2f}{total_floor['bf16']:>12.2f}"
        )


if __name__ == "__main__":
    main()
