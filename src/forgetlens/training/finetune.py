"""One fine-tuning run, SFT or RL, from base model to behaviour table.

Run directory::

    RUN_DIR/config.json          FinetuneConfig, versions, seed
    RUN_DIR/checkpoints/checkpoint-N/   step 0 is the base model; then every ``checkpoint_every`` steps
    RUN_DIR/budget.json          prompts, tokens, wall time, generation share
    RUN_DIR/training_log.json    the trainer's log history (loss, rewards, zero-variance groups, ...)
    RUN_DIR/behaviour/checkpoint-N.json   behaviour at each checkpoint (cached; reused on --resume)
    RUN_DIR/behaviour.json, behaviour.csv the table over checkpoints

``--resume`` continues training from the newest trainer checkpoint (optimizer, scheduler and RNG state
included) and re-evaluates only checkpoints without a cached behaviour file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from pathlib import Path

import torch

from forgetlens.config import FinetuneConfig, RLConfig
from forgetlens.errors import ForgetlensError
from forgetlens.metrics.behaviour import chat_prompts, forward_kl, generate, prior_behaviour, target_accuracy
from forgetlens.models.loading import configure_threads, load_model
from forgetlens.tasks.registry import parse_task_list
from forgetlens.training.checkpoints import checkpoint_dirs, load_checkpoint, prepare_run_dir
from forgetlens.training.data import conversational_rows, target_splits, training_schedule
from forgetlens.utils import atomic_write_text, is_main_process, progress, versions, wait_for_everyone

METHODS = ("sft", "rl")
PRIOR_EVAL_SEED = 424242


def config_from_dict(data: dict) -> FinetuneConfig:
    rl = RLConfig(**data.get("rl", {}))
    return FinetuneConfig(**{**{k: v for k, v in data.items() if k != "rl"}, "rl": rl})


def validate(cfg: FinetuneConfig) -> None:
    if cfg.method not in METHODS:
        raise ForgetlensError(f"--method must be sft or rl, got {cfg.method!r}")
    for name in ("steps", "prompts_per_step", "checkpoint_every", "prior_eval_examples", "kl_samples",
                 "max_new_tokens"):
        if getattr(cfg, name) <= 0:
            raise ForgetlensError(f"{name} must be positive, got {getattr(cfg, name)}")
    if cfg.rl.num_generations < 2:
        raise ForgetlensError(f"rl.num_generations must be at least 2, got {cfg.rl.num_generations}")


class _GenerationTimer:
    """Wraps ``model.generate`` to add up the time RL spends sampling."""

    def __init__(self, model):
        self.seconds, self._generate = 0.0, model.generate
        model.generate = self

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self._generate(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def train(cfg: FinetuneConfig, run_dir: Path, resume: bool, log=print) -> dict:
    """Train and checkpoint; returns the budget record."""
    from datasets import Dataset

    loaded = load_model(cfg.model)
    configure_threads(loaded.model, cfg.threads)
    model, tokenizer = loaded.model, loaded.tokenizer
    train_records, _ = target_splits(cfg)
    schedule = training_schedule(train_records, cfg)
    dataset = Dataset.from_list(conversational_rows(schedule, with_completion=cfg.method == "sft"))
    ckpt_root = run_dir / "checkpoints"
    base_dir = ckpt_root / "checkpoint-0"
    if is_main_process() and not (base_dir / "model.safetensors").exists():
        tmp = ckpt_root / ".checkpoint-0.tmp"
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        tmp.replace(base_dir)
    model.train()
    timer = _GenerationTimer(model) if cfg.method == "rl" else None
    if cfg.method == "sft":
        from forgetlens.training.trainers import build_sft_trainer

        trainer = build_sft_trainer(model, tokenizer, dataset, cfg, ckpt_root)
    else:
        from forgetlens.training.trainers import build_rl_trainer

        trainer = build_rl_trainer(model, tokenizer, dataset, cfg, ckpt_root)
    resume_from = None
    trained = [d for s, d in checkpoint_dirs(run_dir) if s > 0 and (d / "trainer_state.json").exists()]
    if resume and trained:
        resume_from = str(trained[-1])
        log(f"resuming {cfg.method} from {trained[-1].name}")
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    history = trainer.state.log_history
    if not is_main_process():
        return {}
    atomic_write_text(run_dir / "training_log.json", json.dumps(history, indent=1))
    prompt_tokens = sum(len(tokenizer(tokenizer.apply_chat_template(r["prompt"], tokenize=False,
                                                                    add_generation_prompt=True),
                                      add_special_tokens=False)["input_ids"]) for r in dataset)
    budget = {
        "method": cfg.method,
        "optimizer_steps": cfg.steps,
        "training_prompts": len(schedule),
        "distinct_training_questions": len({r["question"] for r in train_records}),
        "prompt_tokens": prompt_tokens * (cfg.rl.num_generations if cfg.method == "rl" else 1),
        "trainer_num_tokens": next((h["num_tokens"] for h in reversed(history) if "num_tokens" in h), None),
        "wall_seconds_this_session": round(seconds, 2),
        "generation_seconds_this_session": round(timer.seconds, 2) if timer else 0.0,
        "resumed_from": resume_from,
        "frac_reward_zero_std": [h["frac_reward_zero_std"] for h in history if "frac_reward_zero_std" in h],
    }
    atomic_write_text(run_dir / "budget.json", json.dumps(budget, indent=1))
    return budget


def evaluate_checkpoints(cfg: FinetuneConfig, run_dir: Path, log=print) -> list[dict]:
    """Behaviour at every checkpoint (cached per checkpoint); writes behaviour.json and behaviour.csv."""
    base = load_model(cfg.model)
    configure_threads(base.model, cfg.threads)
    tokenizer = base.tokenizer
    _, eval_records = target_splits(cfg)
    tasks = parse_task_list(None)
    prompts = chat_prompts(tokenizer, eval_records)
    kl_prompts = [p for p in prompts for _ in range(cfg.kl_samples)]
    samples = generate(base.model, tokenizer, kl_prompts, cfg.max_new_tokens, sample=True, seed=cfg.seed)
    cache = run_dir / "behaviour"
    cache.mkdir(exist_ok=True)
    rows, base_prior = [], None
    for step, path in progress(checkpoint_dirs(run_dir), desc=f"evaluate {cfg.method}"):
        cached = cache / f"{path.name}.json"
        if cached.exists():
            row = json.loads(cached.read_text())
        else:
            model = base.model if step == 0 else load_checkpoint(path, cfg.model)
            acc, per_record = target_accuracy(model, tokenizer, eval_records, cfg.max_new_tokens)
            prior = prior_behaviour(model, tokenizer, tasks, cfg.prior_eval_examples, PRIOR_EVAL_SEED)
            kl = forward_kl(base.model, model, tokenizer, kl_prompts, samples)
            row = {"step": step, "target_accuracy": acc, "target_correct": per_record,
                   "kl_forward": sum(kl) / len(kl), "prior": prior}
            atomic_write_text(cached, json.dumps(row))
        if step == 0:
            base_prior = row["prior"]
        rows.append(row)
    for row in rows:
        for name, values in row["prior"].items():
            ref = base_prior[name]
            values["retention_accuracy"] = values["accuracy"] / ref["accuracy"] if ref["accuracy"] else float("nan")
            values["retention_logit_diff"] = (values["logit_diff"] / ref["logit_diff"]
                                              if ref["logit_diff"] else float("nan"))
    table = {"method": cfg.method, "seed": cfg.seed, "n_eval_records": len(eval_records),
             "accuracy_threshold": cfg.accuracy_threshold,
             "steps_to_threshold": next((r["step"] for r in rows if r["target_accuracy"] >= cfg.accuracy_threshold),
                                        None),
             "checkpoints": rows}
    atomic_write_text(run_dir / "behaviour.json", json.dumps(table, indent=1))
    atomic_write_text(run_dir / "behaviour.csv", behaviour_csv(rows))
    return rows


def behaviour_csv(rows: list[dict]) -> str:
    """One line per checkpoint: step, target accuracy, KL, and per prior task accuracy/logit diff/retention."""
    tasks = list(rows[0]["prior"]) if rows else []
    header = ["step", "target_accuracy", "kl_forward"] + [f"{t}_{k}" for t in tasks for k in
                                                           ("accuracy", "logit_diff", "retention_accuracy",
                                                            "retention_logit_diff")]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for r in rows:
        writer.writerow([r["step"], r["target_accuracy"], r["kl_forward"]] +
                        [r["prior"][t][k] for t in tasks for k in ("accuracy", "logit_diff", "retention_accuracy",
                                                                    "retention_logit_diff")])
    return buf.getvalue()


def finetune(cfg: FinetuneConfig, run_dir: Path, resume: bool = False, overwrite: bool = False,
             log=print) -> list[dict]:
    """Validate, train (or resume), checkpoint and measure behaviour; returns the behaviour rows."""
    validate(cfg)
    target_splits(cfg)  # fail on bad data before anything is written
    run_dir = Path(run_dir)
    record_path = run_dir / "config.json"
    if resume and record_path.exists():
        stored = config_from_dict(json.loads(record_path.read_text())["config"])
        if stored != cfg:
            raise ForgetlensError(f"{record_path}: --resume with different options than the run was started with")
    if is_main_process():
        prepare_run_dir(run_dir, resume, overwrite)
        atomic_write_text(record_path, json.dumps({"config": dataclasses.asdict(cfg), "seed": cfg.seed,
                                                   "versions": versions()}, indent=1))
    wait_for_everyone()
    torch.manual_seed(cfg.seed)
    done = run_dir / "training_done.json"
    if not (resume and done.exists()):
        budget = train(cfg, run_dir, resume, log)  # every launched process trains its share of each batch
        if is_main_process():
            atomic_write_text(done, json.dumps(budget))
    wait_for_everyone()
    if not is_main_process():
        return []  # behaviour is measured once, by the main process
    return evaluate_checkpoints(cfg, run_dir, log)
