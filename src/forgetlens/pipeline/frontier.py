"""``forgetlens frontier``: each method's Pareto frontier of adaptation against forgetting, over learning rates,
budgets and seeds, and the methods compared at matched adaptation (RL's Razor's design, with circuits along it).

Stages and what each leaves in OUT (every file written atomically; ``--resume`` skips what is done)::

    frontier_config.json                the FrontierConfig, seeds and versions
    1 circuits  circuits/TASK.safetensors   each prior task's base circuit C0 (when ``circuits``)
    2 runs      runs/METHOD-lrLR-sSEED/     one ``forgetlens finetune`` run directory per arm, rate and seed: every
                                            checkpoint measured as it is written (behaviour/), training stopped at
                                            the plateau (``plateau``), only the newest weights kept with
                                            ``keep_weights: last``
                base-behaviour/KEY.json     the base model's row, shared by every run of a seed
    3 analyse   frontier.json               every point, the frontiers, matched-accuracy differences, paired tests,
                                            the forgetting predictors, the cheapest picks, RL's reward signal
    4 report    frontier.html
                timings.json                wall time per stage

Every run is a plain fine-tuning run directory (``pipeline/finetune.py``) and is resumed where it stopped; the
analysis reads only the run directories' behaviour and budget records.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from forgetlens.analysis.frontier import (
    MEAN,
    Point,
    PointTable,
    StopReason,
    adaptation_speed,
    cheapest,
    compare_frontiers,
    forgetting_predictors,
    identity_draw,
    paired_tests,
    pareto_set,
    plateaued,
    reward_saturated,
    reward_signal,
)
from forgetlens.analysis.runs import RunId
from forgetlens.artefacts import claim_run_dir, read_json, write_json
from forgetlens.config.loading import check_resumable
from forgetlens.config.methods import finetune_method
from forgetlens.config.options import FinetuneConfig, FrontierConfig, PlateauConfig
from forgetlens.errors import ForgetlensError
from forgetlens.pipeline.evaluate import Circuits
from forgetlens.pipeline.finetune import finetune
from forgetlens.pipeline.finetune import validate as validate_finetune
from forgetlens.pipeline.results import BEHAVIOUR_TABLE, BUDGET, TRAINING_LOG, read_record
from forgetlens.progress import open_task, track
from forgetlens.tasks.registry import chosen_task_names
from forgetlens.utils import versions

if TYPE_CHECKING:  # annotations only
    from forgetlens.progress import Logger

SCHEMA = "forgetlens-frontier/1"
"""frontier.json's format name and version."""

Renderer = Callable[[dict, Path], None]
"""Writes the frontier page from frontier.json's content (``report.frontier.write_frontier_report``)."""


def frontier_runs(cfg: FrontierConfig) -> dict[str, FinetuneConfig]:
    """{run name (``METHOD-lrLR-sSEED``): its fine-tuning config}, RL-family runs first (they take longest)."""
    shared = dataclasses.replace(
        cfg.finetune,
        model=cfg.model,
        data=cfg.data,
        prior_tasks=cfg.tasks,
        checkpoint_every=cfg.checkpoint_every,
    )
    runs = {}
    for arm in sorted(cfg.arms, key=lambda a: finetune_method(a.method).trainer != "rl"):
        for lr in arm.lrs:
            for seed in cfg.seeds:
                ft = dataclasses.replace(
                    shared,
                    method=arm.method,
                    seed=seed,
                    steps=arm.steps or cfg.max_steps,
                    warmup_steps=shared.warmup_steps if arm.warmup_steps is None else arm.warmup_steps,
                    lora_rank=shared.lora_rank if arm.lora_rank is None else arm.lora_rank,
                )
                runs[str(RunId(arm.name, seed=seed, lr=lr))] = ft.with_learning_rate(lr)
    return runs


def validate_frontier(cfg: FrontierConfig, source: str = "config") -> None:
    """One ForgetlensError listing every problem with ``cfg`` (and with its runs' model and data), one per line."""
    problems = cfg.problems()
    if problems:
        raise ForgetlensError("\n".join(f"{source}: {p}" for p in problems))
    try:
        validate_finetune(next(iter(frontier_runs(cfg).values())), "finetune.")
    except ForgetlensError as exc:
        raise ForgetlensError("\n".join(f"{source}: {line}" for line in str(exc).splitlines())) from None


class Frontier:
    """One frontier's directory and the stages that fill it."""

    def __init__(self, cfg: FrontierConfig, out: Path, log: Logger = print, jobs: int = 1):
        self.cfg, self.out, self.log, self.jobs = cfg, Path(out), log, jobs
        self.tasks = chosen_task_names(cfg.tasks, model=cfg.model)
        self.runs = frontier_runs(cfg)
        timings = self.out / "timings.json"
        self.timings: dict[str, float] = read_json(timings) if timings.exists() else {}

    def _timed(self, stage: str, fn: Callable[[], None]) -> None:
        start = time.perf_counter()
        fn()
        self.timings[stage] = round(self.timings.get(stage, 0.0) + time.perf_counter() - start, 2)
        write_json(self.out / "timings.json", self.timings)

    # --- stage 1 -----------------------------------------------------------------------------------------------
    def circuit_path(self, task: str) -> Path:
        return self.out / "circuits" / f"{task}.safetensors"

    def find_circuits(self) -> None:
        """Each prior task's base circuit C0 on its discovery prompts (skipped when stored)."""
        if not self.cfg.circuits:
            return
        todo = [t for t in self.tasks if not self.circuit_path(t).exists()]
        if not todo:
            return
        from forgetlens.circuits.circuit import save_circuit
        from forgetlens.circuits.discover import discover_circuit
        from forgetlens.models.loading import configure_threads, load_model
        from forgetlens.tasks.registry import get_task

        base = load_model(self.cfg.model)
        configure_threads(base.model, self.cfg.finetune.threads)
        for task in track(todo, "1/4 base circuits", "tasks"):
            circuit = discover_circuit(base.model, base.tokenizer, get_task(task), self.cfg.discovery)
            save_circuit(self.circuit_path(task), circuit)

    def circuits(self) -> Circuits | None:
        """{task: C0's heads} as stored by stage 1, or None when circuits are off."""
        if not self.cfg.circuits:
            return None
        from forgetlens.circuits.circuit import load_circuit
        from forgetlens.models.heads import HeadLayout
        from forgetlens.models.loading import load_model

        layout = HeadLayout.of(load_model(self.cfg.model).model)
        return {
            t: [(int(l), int(h)) for l, h in load_circuit(self.circuit_path(t), layout.n_layers, layout.n_heads).heads]
            for t in self.tasks
        }

    # --- stage 2 -----------------------------------------------------------------------------------------------
    def run_dir(self, name: str) -> Path:
        return self.out / "runs" / name

    def finished(self, name: str) -> bool:
        return (self.run_dir(name) / "behaviour.json").exists() and (self.run_dir(name) / "budget.json").exists()

    def train_runs(self) -> None:
        """Every run not yet finished, ``jobs`` at a time (each one resumed where it stopped)."""
        todo = [n for n in self.runs if not self.finished(n)]
        if not todo:
            return
        if self.jobs == 1:
            for name in track(todo, "2/4 runs", "runs"):
                train_one_run(self.cfg, self.out, name)
            return
        from concurrent.futures import as_completed

        from forgetlens.pipeline.schedule import worker_pool

        with worker_pool(self.jobs) as pool, open_task("2/4 runs", len(todo), "runs", eta=False) as shown:
            futures = [pool.submit(train_one_run, self.cfg, self.out, name) for name in todo]
            for future in as_completed(futures):
                future.result()  # re-raises a run's error here
                shown.advance()

    # --- stage 3 -----------------------------------------------------------------------------------------------
    def analyse(self) -> dict:
        """frontier.json from the run directories."""
        results = analyse_frontier(self.cfg, self.out, self.runs, self.circuits())
        results["timings"] = dict(self.timings)
        write_json(self.out / "frontier.json", results)
        return results


def train_one_run(cfg: FrontierConfig, out: Path, name: str) -> None:
    """Train (or resume) run ``name`` of the frontier in ``out`` and measure each of its checkpoints."""
    from forgetlens.utils import silence_known_warnings

    silence_known_warnings()
    frontier = Frontier(cfg, out, log=lambda *a: None)
    ft = frontier.runs[name]
    run_dir = frontier.run_dir(name)
    finetune(
        ft,
        run_dir,
        resume=run_dir.exists(),
        log=lambda *a: None,
        shared_base=out / "base-behaviour",
        circuits=frontier.circuits(),
        stop=partial(stop_reason, plateau=cfg.plateau, window=cfg.checkpoint_every),
        keep_weights=cfg.keep_weights,
    )


def stop_reason(
    history: list[tuple[int, float]], zero_signal: list[float], plateau: PlateauConfig, window: int
) -> StopReason | None:
    """Why a frontier run stops at the checkpoint just measured, if it does: its held-out accuracy has plateaued
    (``history``: (step, accuracy) per checkpoint), or its training reward has saturated over the ``window``
    steps since the checkpoint before (``zero_signal``: [steps], the trained groups' share without signal)."""
    if plateaued(history, plateau.patience, plateau.min_gain, plateau.min_steps):
        return "plateau"
    if reward_saturated(zero_signal, window, plateau.max_zero_signal, history[-1][0], plateau.min_steps):
        return "reward saturated"
    return None


# --- reading the runs back ----------------------------------------------------------------------------------------
def run_points(run_dir: Path, arm: str, lr: float, seed: int) -> tuple[list[Point], dict]:
    """A run's points (one per checkpoint, step 0 the base) and its record for frontier.json."""
    behaviour = read_record(run_dir / "behaviour.json", BEHAVIOUR_TABLE, "a behaviour table")
    budget = read_record(run_dir / "budget.json", BUDGET, "a run's budget record")
    steps_trained = int(budget.get("optimizer_steps") or 0)
    seconds = float(budget.get("wall_seconds_this_session") or 0.0)
    log_path = run_dir / "training_log.json"
    log = read_record(log_path, TRAINING_LOG, "a training log") if log_path.exists() else []
    per_step = [h for h in log if "frac_reward_zero_std" in h]
    zero_share = [h["frac_reward_zero_std"] for h in per_step]  # [steps]
    mean_reward = [h.get("reward") for h in per_step]  # [steps]
    trained_zero = [h["frac_trained_zero_std"] for h in per_step if "frac_trained_zero_std" in h]  # dynamic sampling
    points = []
    rows = []
    for row in behaviour["checkpoints"]:
        step = int(row["step"])
        prior = row["prior"]
        per_prompt = {t: v.get("per_prompt") for t, v in prior.items()}
        if any(pp is None for pp in per_prompt.values()):
            raise ForgetlensError(
                f"{run_dir / 'behaviour.json'}: step {step} has no per-prompt prior-task records; expected a run made "
                "by forgetlens frontier (finetune.prior_per_prompt)"
            )
        points.append(
            Point(
                arm=arm,
                lr=lr,
                seed=seed,
                step=step,
                target_correct=np.asarray(row["target_correct"], dtype=float),
                prior_correct={t: np.asarray(pp["correct"], dtype=float) for t, pp in per_prompt.items()},
                prior_logp={t: np.asarray(pp["logp_answer"], dtype=float) for t, pp in per_prompt.items()},
                c0_logp={
                    t: np.asarray(pp["c0_joint_logp_answer"], dtype=float)
                    for t, pp in per_prompt.items()
                    if "c0_joint_logp_answer" in pp
                },
                kl_forward=float(row["kl_forward"]),
                kl_chat=(row.get("general") or {}).get("kl_chat"),
                seconds=seconds * step / steps_trained if steps_trained else 0.0,
            )
        )
        rows.append(
            {
                "step": step,
                "target_accuracy": row["target_accuracy"],
                "kl_forward": row["kl_forward"],
                "kl_chat": (row.get("general") or {}).get("kl_chat"),
                "prior": {
                    t: {k: v for k, v in values.items() if k not in ("per_prompt",)} for t, values in prior.items()
                },
            }
        )
    record = {
        "arm": arm,
        "lr": lr,
        "seed": seed,
        "steps_trained": steps_trained,
        "stopped_at_plateau": bool(budget.get("stopped_before_steps")),
        "stop_reason": budget.get("stop_reason", "plateau" if budget.get("stopped_before_steps") else None),
        "resumed": bool(budget.get("resumed_from")),
        "training_seconds": seconds,
        "zero_signal_share": zero_share,
        "trained_zero_signal_share": trained_zero,
        "mean_reward": mean_reward,
        "signal": reward_signal(zero_share, mean_reward),
        "checkpoints": rows,
    }
    return points, record


def _timed_from_whole_runs(points: list[Point], records: dict[str, dict]) -> list[Point]:
    """A resumed run's budget timed only its last session: its points' seconds become its arm's median seconds per
    step over the runs trained in one session (left as recorded where the arm has none), and its record says so
    (``training_seconds_estimated``)."""
    per_step: dict[str, list[float]] = {}
    for r in records.values():
        if not r["resumed"] and r["steps_trained"]:
            per_step.setdefault(r["arm"], []).append(r["training_seconds"] / r["steps_trained"])
    rate = {arm: float(np.median(v)) for arm, v in per_step.items()}
    estimated = set()
    for r in records.values():
        r["training_seconds_estimated"] = bool(r["resumed"] and r["arm"] in rate)
        if r["training_seconds_estimated"]:
            r["training_seconds"] = rate[r["arm"]] * r["steps_trained"]
            estimated.add((r["arm"], r["lr"], r["seed"]))
    return [
        dataclasses.replace(p, seconds=rate[p.arm] * p.step) if (p.arm, p.lr, p.seed) in estimated else p
        for p in points
    ]


def analyse_frontier(
    cfg: FrontierConfig, out: Path, runs: dict[str, FinetuneConfig], circuits: Circuits | None
) -> dict:
    """frontier.json's content from the finished run directories (module docstring)."""
    points: list[Point] = []
    bases: dict[int, Point] = {}  # step 0 of every run of a seed is the same base row (base-behaviour/)
    records = {}
    for name in runs:
        run = RunId.parse(name)
        assert run.lr is not None and run.seed is not None  # frontier_runs names every run so
        pts, record = run_points(out / "runs" / name, run.method, run.lr, run.seed)
        points += [p for p in pts if p.step > 0]
        bases.setdefault(run.seed, next(p for p in pts if p.step == 0))
        records[name] = record
    points = _timed_from_whole_runs(points, records)
    table = PointTable([*bases.values(), *points], cfg.analysis.retention)
    arms = [a.name for a in cfg.arms]
    a = cfg.analysis
    comparison = compare_frontiers(table, arms, a.levels, a.n_boot, a.seed) if len(arms) > 1 else {}
    levels = comparison.get("levels", {})
    draw = identity_draw(table.seeds, table.tasks)
    base = table.base_values(draw)
    configs = []
    for arm in arms:
        values = table.values(draw, arm)
        on_front = {(v.lr, v.step) for v in pareto_set([base, *values])}
        for v in values:
            configs.append(
                {
                    "arm": v.arm,
                    "lr": v.lr,
                    "step": v.step,
                    "accuracy": v.accuracy,
                    "retention": v.retention,
                    "drop": v.drop,
                    "n_seeds": v.n_seeds,
                    "damage": v.damage,
                    "seconds": v.seconds,
                    "pareto": (v.lr, v.step) in on_front,
                }
            )
    target = a.target_accuracy if a.target_accuracy is not None else (max(levels.values()) if levels else None)
    rl_runs = [records[n] for n, ft in runs.items() if finetune_method(ft.method).trainer == "rl"]
    signal = reward_signal(
        [s for r in rl_runs for s in r["zero_signal_share"]], [m for r in rl_runs for m in r["mean_reward"]]
    )
    return {
        "schema": SCHEMA,
        "config": dataclasses.asdict(cfg),
        "seeds": list(cfg.seeds),
        "versions": versions(),
        "arms": arms,
        "tasks": table.tasks,
        "circuits": {t: [list(h) for h in heads] for t, heads in (circuits or {}).items()},
        "base": {
            "accuracy": base.accuracy,
            "prior_accuracy": {
                t: float(np.mean([table.base[s].prior_correct[t].mean() for s in table.seeds])) for t in table.tasks
            },
            "n_questions": table.n_questions,
            "n_prompts": table.n_prompts,
        },
        "runs": records,
        "configs": configs,
        "comparison": comparison,
        "paired_tests": paired_tests(table, arms, levels, a.n_boot, a.seed) if len(arms) > 1 else {},
        "speed": adaptation_speed(table, arms, levels),
        "predictors": {
            "all": forgetting_predictors(table, a.n_boot, a.seed),
            **{arm: forgetting_predictors(table, a.n_boot, a.seed, arm=arm) for arm in arms},
        },
        "picks": {
            "target_accuracy": target,
            "retention_floor": a.retention_floor,
            "cheapest": cheapest(table, target, a.retention_floor, arms)[:5] if target is not None else [],
        },
        "rl_signal": {
            **signal,
            "steps": sum(len(r["zero_signal_share"]) for r in rl_runs),
            "runs": len(rl_runs),
            "trained_zero_signal_share": (  # of the groups trained on, under dynamic sampling (rl.oversample)
                float(np.mean(trained))
                if (trained := [s for r in rl_runs for s in r["trained_zero_signal_share"]])
                else None
            ),
        },
        "mean_key": MEAN,
    }


def run_frontier(
    cfg: FrontierConfig,
    out: Path,
    resume: bool = False,
    overwrite: bool = False,
    log: Logger = print,
    jobs: int = 1,
    render: Renderer | None = None,
) -> dict:
    """Run (or resume) every stage; returns frontier.json's content. A resumed frontier may add seeds and change
    the ``analysis`` section (it only reads the runs: a practitioner's target and floor are asked of the same runs),
    never another option."""
    validate_frontier(cfg)
    if jobs < 1:
        raise ForgetlensError(f"--jobs must be at least 1, got {jobs}")
    out = Path(out)
    record = out / "frontier_config.json"
    if resume and record.exists():
        check_resumable(record, cfg, free=("analysis",))
    with claim_run_dir(out, resume, overwrite, kind="frontier"):
        write_json(record, {"config": dataclasses.asdict(cfg), "seeds": list(cfg.seeds), "versions": versions()})
        frontier = Frontier(cfg, out, log, jobs)
        frontier._timed("circuits", frontier.find_circuits)
        frontier._timed("runs", frontier.train_runs)
        results: dict = {}
        frontier._timed("analyse", lambda: results.update(frontier.analyse()))
        if render is not None:
            frontier._timed("report", lambda: render(results, out / "frontier.html"))
        return results
