"""Why RL collapsed on Qwen2.5-Coder-0.5B-Instruct, and RL there in the literature's regime.

    python experiments/qwen_rl_regime.py one-step --out runs/qwen-one-step [--lrs 1e-4,3e-5,1e-5,3e-6,1e-6]
    python experiments/qwen_rl_regime.py train --out runs/qwen-rl [--lrs 1e-6,1e-5] [--steps 24]
    python experiments/qwen_rl_regime.py weight-scale --out runs/qwen-one-step
    python experiments/qwen_rl_regime.py answers --checkpoint runs/qwen-rl/rl-lr1e-05/checkpoints/checkpoint-24 \
        --out runs/qwen-rl

``one-step``: from the base model, one Dr.GRPO step (4 prompts x 8 completions, no warm-up, as the collapsed
runs took it) at each rate, then, on the held-out target prompts, what that one step did: the forward KL of the
next-token distribution at the answer's first position, the probability mass on tokens that no rollout of the step
contained, greedy target accuracy, and the update itself (Adam's first step is ``lr * sign(g)`` wherever the
gradient is not ~0: the share of each weight group's entries that moved by the full rate, and the relative norm
of the change). Writes ``OUT/one-step.json``.

``train``: ``forgetlens finetune``'s RL on Qwen at each rate with linear warm-up (4 steps), 4 prompts x 8
completions, temperature 0.7, 12-token completions and evaluation, checkpoints every 12 steps; each run's
behaviour (target accuracy, prior tasks, forward KL) and its zero-signal share. Writes ``OUT/rl-lrLR/`` (run
directories) and ``OUT/summary.json``.

``weight-scale``: the root-mean-square weight of each group (embed, attention, mlp, norms, lm_head) of Qwen and of
SmolLM2-135M; one rate is a step of a different relative size on each. Writes ``OUT/weight-scale.json``.

``answers``: the base's and a checkpoint's greedy replies to held-out target questions, scored.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import time
from pathlib import Path

from forgetlens.artefacts import write_json
from forgetlens.config.options import FinetuneConfig, RLConfig

MODEL = "qwen2.5-coder-0.5b"


def base_config(lr: float, steps: int, warmup: int, model: str = MODEL) -> FinetuneConfig:
    """RL on Qwen with the SmolLM2 frontier's rollout settings (groups of 8, temperature 0.7, 12 tokens)."""
    return FinetuneConfig(
        method="rl",
        model=model,
        synthetic_target="compare-short",
        seed=0,
        steps=steps,
        prompts_per_step=4,
        lr_rl=lr,
        warmup_steps=warmup,
        checkpoint_every=12,
        eval_fraction=0.35,
        prior_eval_examples=64,
        max_new_tokens=12,
        kl_samples=1,
        kl_prompts=24,
        kl_max_new_tokens=24,
        prior_tasks=["induction", "ioi", "fact_recall"],
        threads=1,
        rl=RLConfig(num_generations=8, temperature=0.7, max_completion_length=12),
    )


def one_step(lrs: list[float], out: Path, model_name: str = MODEL) -> None:
    results = {}
    for lr in lrs:
        results[f"{lr:g}"] = one_step_at(lr, model_name)
        print(json.dumps(results[f"{lr:g}"]), flush=True)
        write_json(out / "one-step.json", results)


def one_step_at(lr: float, model_name: str) -> dict:
    """One RL step from the base at ``lr``, and what it did (module docstring)."""
    import tempfile

    import torch
    from datasets import Dataset

    from forgetlens.measure.behaviour import chat_prompts, target_accuracy
    from forgetlens.models.forward import answer_logits
    from forgetlens.models.loading import configure_threads, load_model
    from forgetlens.training.data import conversational_rows, target_splits, training_schedule
    from forgetlens.training.rollouts import left_pad
    from forgetlens.training.trainers import build_rl_trainer

    cfg = base_config(lr, steps=1, warmup=0, model=model_name)
    if model_name == "embedded":  # its own tasks (a development check of this script)
        cfg = dataclasses.replace(cfg, prior_tasks=None)
    loaded = load_model(model_name)
    configure_threads(loaded.model, cfg.threads)
    tok = loaded.tokenizer
    train, evaluation = target_splits(cfg)
    evaluation = evaluation[:32]
    prompts = chat_prompts(tok, evaluation)
    enc = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]

    def first_token_logp(model) -> torch.Tensor:
        ids, mask = left_pad(enc, tok.pad_token_id)
        last = torch.full((len(enc),), ids.shape[1] - 1)
        with torch.no_grad():
            return answer_logits(model, ids, mask, last).float().log_softmax(-1)  # [prompts, vocab]

    logp0 = first_token_logp(loaded.model)
    acc0, _ = target_accuracy(loaded.model, tok, evaluation, cfg.max_new_tokens)
    rows = conversational_rows(training_schedule(train, cfg), with_completion=False)
    sampled: set[int] = set()
    loaded.model.train()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_rl_trainer(loaded.model, tok, Dataset.from_list(rows), cfg, Path(tmp))
        original = trainer._generate_single_turn

        def record(*args, **kwargs):
            completions, logprobs = original(*args, **kwargs)
            for c in completions:
                sampled.update(c)
            for p in args[0]:
                sampled.update(p)
            return completions, logprobs

        trainer._generate_single_turn = record
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        log = trainer.state.log_history[0]
        groups = first_update(loaded.model, trainer.optimizer, lr)
        del trainer  # its optimizer state (twice the weights) before the evaluation below
        gc.collect()
    model = loaded.model.eval()
    logp1 = first_token_logp(model)
    kl = (logp0.exp() * (logp0 - logp1)).sum(-1).mean().item()
    unseen = torch.ones(logp0.shape[-1], dtype=torch.bool)
    unseen[list(sampled)] = False
    mass0, mass1 = (lp.exp()[:, unseen].sum(-1).mean().item() for lp in (logp0, logp1))
    acc1, _ = target_accuracy(model, tok, evaluation, cfg.max_new_tokens)
    return {
        "lr": lr,
        "reward": log.get("reward"),
        "zero_signal_share": log.get("frac_reward_zero_std"),
        "seconds": round(seconds, 1),
        "kl_first_answer_token": kl,
        "mass_on_unsampled_tokens": {"before": mass0, "after": mass1},
        "unsampled_vocabulary_share": float(unseen.float().mean()),
        "target_accuracy": {"before": acc0, "after": acc1},
        "update": {
            g: {
                "share_moved_by_half_lr_or_more": v["moved_by_lr"] / v["entries"],
                "relative_norm": (v["delta_sq"] / v["weight_sq"]) ** 0.5,
            }
            for g, v in groups.items()
        },
    }


def answers(checkpoint: Path, n: int, out: Path) -> None:
    """Greedy replies of the base and of ``checkpoint`` to the first ``n`` held-out target questions of the train
    runs' split, with their scores: what a collapsed run says instead. Writes ``OUT/answers-NAME.json``."""
    from forgetlens.measure.behaviour import chat_prompts, generate, score_reply
    from forgetlens.models.loading import load_model
    from forgetlens.training.data import target_splits

    cfg = base_config(1e-6, steps=1, warmup=0)
    _, evaluation = target_splits(cfg)
    records = evaluation[:n]
    rows = [{"question": r["question"], "answer": r.get("answer")} for r in records]
    for label, spec in (("base", MODEL), ("tuned", str(checkpoint))):
        loaded = load_model(spec)
        prompts = chat_prompts(loaded.tokenizer, records)
        replies = generate(loaded.model, loaded.tokenizer, prompts, cfg.max_new_tokens)
        for row, ids, record in zip(rows, replies, records, strict=True):
            text = loaded.tokenizer.decode(ids, skip_special_tokens=False)
            row[label] = {"reply": text, "score": score_reply(text, record)}
        del loaded
        gc.collect()
    name = f"{checkpoint.parent.parent.name}-{checkpoint.name}"
    write_json(out / f"answers-{name}.json", {"checkpoint": str(checkpoint), "rows": rows})
    for row in rows:
        print(json.dumps(row, ensure_ascii=False), flush=True)


def weight_group(name: str) -> str:
    """The weight group a parameter belongs to: lm_head, embed, mlp, attention or norms."""
    if name.startswith("lm_head"):
        return "lm_head"
    if "embed" in name:
        return "embed"
    if ".mlp." in name:
        return "mlp"
    return "attention" if "self_attn" in name else "norms"


def weight_scale(models: list[str], out: Path) -> None:
    """Root-mean-square weight per group of each model: Adam moves every entry by about the rate, so the relative
    size of a step at one rate is the rate over this. Writes ``OUT/weight-scale.json``."""
    from forgetlens.models.loading import load_model

    scale = {}
    for name in models:
        model = load_model(name).model
        sums: dict[str, list[float]] = {}
        for pname, p in model.named_parameters():
            acc = sums.setdefault(weight_group(pname), [0.0, 0.0])
            acc[0] += float(p.detach().float().pow(2).sum())
            acc[1] += p.numel()
        scale[name] = {group: (sq / n) ** 0.5 for group, (sq, n) in sums.items()}
        print(name, json.dumps(scale[name]), flush=True)
        del model
        gc.collect()
    write_json(out / "weight-scale.json", scale)


def first_update(model, optimizer, lr: float) -> dict[str, dict]:
    """Adam's first update per weight group, read from its state (no copy of the weights): m = (1 - b1) g and
    v = (1 - b2) g^2, so the bias-corrected step is lr * g / (|g| + eps'), the full rate wherever the gradient is not
    ~0. {group: {entries, moved_by_lr (entries moved by at least half the rate), delta_sq, weight_sq}}; computed
    parameter by parameter in float32 (a float64 copy of Qwen's unembedding alone is 1.1 GB)."""
    beta1, beta2 = optimizer.param_groups[0]["betas"]
    eps = optimizer.param_groups[0]["eps"]
    groups: dict[str, dict] = {}
    for name, p in model.named_parameters():
        group = weight_group(name)
        state = optimizer.state.get(p, {})
        g = groups.setdefault(group, {"entries": 0, "moved_by_lr": 0, "delta_sq": 0.0, "weight_sq": 0.0})
        g["entries"] += p.numel()
        g["weight_sq"] += float(p.detach().float().pow(2).sum())
        if "exp_avg" in state:
            delta = (state["exp_avg"] / (1 - beta1)).abs_()
            delta.div_((state["exp_avg_sq"] / (1 - beta2)).sqrt_().add_(eps)).mul_(lr)
            g["moved_by_lr"] += int((delta > 0.5 * lr).sum())
            g["delta_sq"] += float(delta.pow(2).sum())
            del delta
    return groups


def train(lrs: list[float], steps: int, out: Path) -> None:
    from forgetlens.pipeline.finetune import finetune

    path = out / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}  # rates run by earlier calls stay
    for lr in lrs:
        cfg = base_config(lr, steps=steps, warmup=4)
        run = out / f"rl-lr{lr:g}"
        rows = finetune(cfg, run, resume=run.exists(), log=print)
        budget = json.loads((run / "budget.json").read_text())
        zero = budget["frac_reward_zero_std"]
        summary[f"{lr:g}"] = {
            "config": dataclasses.asdict(cfg),
            "checkpoints": [
                {
                    "step": r["step"],
                    "target_accuracy": r["target_accuracy"],
                    "kl_forward": r["kl_forward"],
                    "prior_accuracy": {t: v["accuracy"] for t, v in r["prior"].items()},
                }
                for r in rows
            ],
            "zero_signal_share_mean": sum(zero) / len(zero) if zero else None,
            "reward": budget["reward"],
            "training_seconds": budget["wall_seconds_this_session"],
        }
        write_json(path, summary)
        print(json.dumps(summary[f"{lr:g}"]["checkpoints"]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["one-step", "train", "weight-scale", "answers"])
    parser.add_argument("--checkpoint", type=Path, default=None, help="answers: the tuned checkpoint's folder")
    parser.add_argument("--n", type=int, default=16, help="answers: how many held-out target questions")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lrs", default=None, help="comma-separated learning rates")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--model", default=MODEL, help="another model, to check this script on (default: Qwen)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "answers":
        if args.checkpoint is None:
            parser.error("answers needs --checkpoint")
        answers(args.checkpoint, args.n, args.out)
    elif args.part == "weight-scale":
        weight_scale([MODEL, "smollm2-135m"], args.out)
    elif args.part == "one-step":
        one_step([float(x) for x in (args.lrs or "1e-4,3e-5,1e-5,3e-6,1e-6").split(",")], args.out, args.model)
    else:
        train([float(x) for x in (args.lrs or "1e-6,1e-5").split(",")], args.steps, args.out)


if __name__ == "__main__":
    main()
