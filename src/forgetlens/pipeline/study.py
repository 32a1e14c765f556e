"""``forgetlens run``: the whole study in one run directory, stage by stage, resumable.

Stages and what each leaves in RUN_DIR (every file written atomically; a stage is skipped on
``--resume`` when its outputs exist, and an interrupted stage redoes only its missing pieces)::

    study_config.json                      the StudyConfig, seeds and versions
    1 circuits  circuits/TASK.safetensors  base circuit C0 per prior task (discovery split)
                measurements/TASK/base.npz the base model's per-prompt measurements (evaluation split)
    2 finetune  runs/METHOD-sSEED/         one ``forgetlens finetune`` run directory per method and seed
                base-behaviour/KEY.json    the base model's behaviour row, shared by runs that evaluate alike
    3 measure   measurements/TASK/METHOD-sSEED@STEP.npz   every checkpoint against every base circuit
    4 analyse   results.json, per_head.csv, checkpoints.csv
    5 report    report.html
                timings.json                wall time per stage (the only thing that differs between reruns)

results.json is written once, by the analyse stage; its ``timings`` are the stages before it.

Nothing below this module imports it: it only wires the stages together.  The report stage calls the renderer the
CLI hands it, so the pipeline does not depend on the report package.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from forgetlens.analysis.anatomy import summarise_anatomy
from forgetlens.analysis.runs import ModelLabel, RunId, checkpoint_label, starts_from
from forgetlens.analysis.vulnerability import load_measurements, save_measurements
from forgetlens.artefacts import claim_run_dir, read_json, write_json
from forgetlens.circuits.circuit import load_circuit, save_circuit
from forgetlens.circuits.discover import task_splits
from forgetlens.config.loading import check_resumable
from forgetlens.config.methods import finetune_method
from forgetlens.config.options import DiscoveryMethod, FinetuneConfig, StudyConfig
from forgetlens.errors import ForgetlensError
from forgetlens.measure.anatomy import measure_anatomy
from forgetlens.measure.base_circuit import BaseCircuit, find_base_circuit
from forgetlens.measure.circuit_damage import circuit_measurements
from forgetlens.measure.first_order_cmap import BaseChunk, base_chunks
from forgetlens.measure.own_circuits import HALVES, heads_to_test, own_circuit_record, prompt_part, read_own_record
from forgetlens.models.heads import HeadLayout
from forgetlens.models.loading import LoadedModel, configure_threads, load_model, model_record
from forgetlens.pipeline.audit import analyse_task
from forgetlens.pipeline.finetune import finetune
from forgetlens.pipeline.finetune import validate as validate_finetune
from forgetlens.pipeline.results import (
    BEHAVIOUR_TABLE,
    BUDGET,
    DIVERGENCE,
    SCHEMA_VERSION,
    checkpoints_csv,
    per_head_csv,
    read_record,
    read_results,
    write_results,
)
from forgetlens.pipeline.schedule import Job, run_task_graph
from forgetlens.progress import open_task, track
from forgetlens.tasks.registry import chosen_task_names, get_task
from forgetlens.training.checkpoints import checkpoint_dirs, load_checkpoint
from forgetlens.training.data import target_splits
from forgetlens.utils import (
    atomic_write_text,
    is_main_process,
    versions,
    wait_for_everyone,
    world_size,
)

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel

    from forgetlens.progress import Logger


Renderer = Callable[[dict, Path], None]
"""Writes a study's report from its results (``report.html.write_report``); the pipeline never imports report."""
STAGES = ("circuits", "finetune", "measure", "analyse", "report")
OVERLAPPED = STAGES[:3]
"""With ``jobs`` > 1 these stages run together as one task graph (``Study.overlapped``)."""


def validate_study(cfg: StudyConfig, source: str = "config") -> None:
    """Raise one ForgetlensError listing every problem with ``cfg``, one line each."""
    problems = cfg.problems()
    if problems:
        raise ForgetlensError("\n".join(f"{source}: {p}" for p in problems))
    try:
        for run_cfg in list(run_configs(cfg).values())[:1]:  # model, data and prompt lengths are shared by all runs
            validate_finetune(run_cfg, "finetune.")
    except ForgetlensError as exc:
        raise ForgetlensError("\n".join(f"{source}: {line}" for line in str(exc).splitlines())) from None


def run_configs(cfg: StudyConfig, run_dir: Path | None = None) -> dict[str, FinetuneConfig]:
    """{run name (``analysis/runs.py``): the fine-tuning config of that run}: every method per seed, the SFT
    learning-rate grid, RL from SFT; RL-from-SFT runs start from ``run_dir``'s SFT runs."""
    shared = dataclasses.replace(cfg.finetune, model=cfg.model, data=cfg.data, prior_tasks=cfg.tasks)
    runs = {
        str(RunId(m, seed=s)): dataclasses.replace(shared, method=m, seed=s) for m in cfg.methods for s in cfg.seeds
    }
    for lr in cfg.sft_lr_grid:
        for s in cfg.seeds:
            runs[str(RunId("sft", seed=s, lr=lr))] = dataclasses.replace(shared, method="sft", seed=s, lr_sft=lr)
    if cfg.rl_from_sft:
        for s in cfg.seeds:
            run = RunId("rl", seed=s, chain="sft")
            start = (Path(run_dir) if run_dir is not None else Path()) / "runs" / str(run.start)
            runs[str(run)] = dataclasses.replace(shared, method="rl", seed=s, init_from=str(start))
    return runs


@dataclass(frozen=True)
class CircuitJob:
    """Stage 1 for one task: its base circuit and the base model's measurements on it."""

    task: str
    """The prior task."""
    needs: tuple[Job, ...] = ()
    """Nothing: the base model alone."""

    @property
    def kind(self) -> str:
        return "circuits"


@dataclass(frozen=True)
class FinetuneJob:
    """Stage 2 for one run: training, checkpoints and their behaviour."""

    run: str
    """The run's name (``analysis/runs.py``)."""
    needs: tuple[Job, ...] = ()
    """The run it starts from, if any (RL from SFT: the SFT run)."""

    @property
    def kind(self) -> str:
        return "finetune"


@dataclass(frozen=True)
class MeasureJob:
    """Stage 3 for one checkpoint on one task: the checkpoint measured against the task's base circuit."""

    label: str
    """The checkpoint's label (``RUN@STEP``)."""
    path: Path
    """Its weights."""
    task: str
    """The prior task."""
    needs: tuple[Job, ...] = ()
    """The task's circuit job and the run's fine-tuning job."""

    @property
    def kind(self) -> str:
        return "measure"


class Study:
    """One study's run directory and the stages that fill it."""

    def __init__(
        self, cfg: StudyConfig, run_dir: Path, log: Logger = print, jobs: int = 1, render: Renderer | None = None
    ):
        self.cfg, self.run_dir, self.log, self.jobs, self.render = cfg, Path(run_dir), log, jobs, render
        self.tasks = [get_task(t) for t in chosen_task_names(cfg.tasks, model=cfg.model)]
        self._base: LoadedModel | None = None
        self._base_circuits: dict[str, BaseCircuit] = {}
        self._base_chunks: dict[str, list[BaseChunk]] = {}
        self.timings = self._read_json("timings.json") or {}

    # --- helpers -------------------------------------------------------------------------------------------
    def _read_json(self, name: str):
        path = self.run_dir / name
        return read_json(path) if path.exists() else None

    def _write_json(self, name: str, data) -> None:
        atomic_write_text(self.run_dir / name, json.dumps(data, indent=1, sort_keys=False))

    @property
    def base(self) -> LoadedModel:
        if self._base is None:
            self._base = load_model(self.cfg.model)
            configure_threads(self._base.model, self.cfg.finetune.threads)
        return self._base

    def _timed(self, stage: str, fn) -> None:
        start = time.perf_counter()
        fn()
        self.timings[stage] = round(self.timings.get(stage, 0.0) + time.perf_counter() - start, 2)
        self._write_json("timings.json", self.timings)

    # --- stage 1: base circuits ---------------------------------------------------------------------------
    def _circuit_path(self, task: str) -> Path:
        return self.run_dir / "circuits" / f"{task}.safetensors"

    def _measure_path(self, task: str, label: str) -> Path:
        return self.run_dir / "measurements" / task / f"{label}.npz"

    def circuits(self) -> None:
        for task in track(self.tasks, "1/5 base circuits", "tasks"):
            self.circuit_of(task.name)

    def circuit_of(self, task_name: str) -> None:
        """Discover and store one task's base circuit and base measurements (skipped when stored)."""
        if self.done_circuit(task_name):
            return
        layout = HeadLayout.of(self.base.model)
        own = [
            (method, part)
            for method in (self.cfg.own_circuits.methods if self.cfg.own_circuits.enabled else [])
            for part in ("all", *HALVES)
        ]
        with open_task(f"base circuit of {task_name}", 1 + len(own), "parts") as shown:
            if not self._circuit_path(task_name).exists() or not self._measure_path(task_name, "base").exists():
                bc = find_base_circuit(self.base, layout, get_task(task_name), self.cfg.discovery)
                save_measurements(self._measure_path(task_name, "base"), bc.measurements)
                save_circuit(self._circuit_path(task_name), bc.circuit)
            shown.advance()
            for method, part in own:
                label = "base" if part == "all" else f"base.{part}"
                self.own_circuit(task_name, label, self.base.model, method, part)
                shown.advance()

    def _own_path(self, task: str, label: str, method: str) -> Path:
        return self.run_dir / "own_circuits" / task / f"{label}.{method}.json"

    def _read_own(self, task: str, label: str, method: str) -> dict:
        layout = HeadLayout.of(self.base.model)
        return read_own_record(self._own_path(task, label, method), layout.n_layers, layout.n_heads)

    def _discovery_prompts(self, task_name: str):
        discovery, _ = task_splits(
            self.base.tokenizer, get_task(task_name), self.cfg.discovery.n_examples, self.cfg.discovery.seed
        )
        return discovery

    def own_circuit(
        self, task_name: str, label: str, model: PreTrainedModel, method: DiscoveryMethod, part: str = "all"
    ) -> None:
        """Model ``label``'s own circuit of ``task_name`` by ``method`` on the discovery prompts (``part``: all or
        a half), with the necessity and sufficiency of the base DBM circuit's heads (skipped when stored)."""
        path = self._own_path(task_name, label, method)
        if path.exists():
            return
        tested, test_own = heads_to_test(
            method,
            part,
            label == "base",
            self.cfg.own_circuits.necessity,
            lambda: self._read_own(task_name, "base", "dbm")["heads"],
        )
        prompts = prompt_part(self._discovery_prompts(task_name), part)
        record = own_circuit_record(
            model, HeadLayout.of(self.base.model), prompts, self.cfg.discovery, method, tested, test_own
        )
        write_json(path, record)

    def base_chunks(self, task_name: str) -> list[BaseChunk]:
        """The base model's forward and gradient on ``task_name``'s evaluation prompts, computed once per Study
        process and shared by every checkpoint it measures (first-order CMAP)."""
        if task_name not in self._base_chunks:
            bc = self.base_circuit(task_name)
            self._base_chunks[task_name] = base_chunks(
                self.base.model, HeadLayout.of(self.base.model), bc.evaluation, metric=bc.circuit.metric
            )
        return self._base_chunks[task_name]

    def base_circuit(self, task_name: str) -> BaseCircuit:
        """Task ``task_name``'s stage-1 outputs, read from disk once per Study."""
        if task_name not in self._base_circuits:
            self._base_circuits[task_name] = self._load_base_circuit(task_name)
        return self._base_circuits[task_name]

    def _load_base_circuit(self, task_name: str) -> BaseCircuit:
        layout = HeadLayout.of(self.base.model)
        circuit = load_circuit(self._circuit_path(task_name), layout.n_layers, layout.n_heads)
        stored = load_measurements(self._measure_path(task_name, "base"))
        return BaseCircuit.of(self.base, layout, get_task(task_name), circuit, self.cfg.discovery, stored)

    # --- stage 2: fine-tuning -----------------------------------------------------------------------------
    def finetune(self) -> None:
        """Every method x seed run; an existing run directory is resumed (its stored config must match)."""
        for name, ft in run_configs(self.cfg, self.run_dir).items():  # an SFT run comes before RL from it
            if self.finetuned(name):  # finished earlier (a resumed study, or one given more seeds)
                continue
            self.log(f"2/5 fine-tuning {name}")
            run_dir = self.run_dir / "runs" / name
            finetune(ft, run_dir, resume=run_dir.exists(), log=self.log, shared_base=self.run_dir / "base-behaviour")

    def finetuned(self, name: str) -> bool:
        return (self.run_dir / "runs" / name / "behaviour.json").exists()

    # --- stage 3: circuit measurements of every checkpoint ----------------------------------------------
    def checkpoints_to_measure(self, name: str) -> list[tuple[str, Path]]:
        """(label, path) of run ``name``'s checkpoints that some task has not measured yet."""
        todo = [
            (checkpoint_label(name, step), path)
            for step, path in checkpoint_dirs(self.run_dir / "runs" / name)
            if step > 0
        ]
        return [
            (label, path)
            for label, path in todo
            if not all(self._measure_path(t.name, label).exists() for t in self.tasks)
        ]

    def measure(self) -> None:
        todo = [item for name in run_configs(self.cfg) for item in self.checkpoints_to_measure(name)]
        for label, path in track(todo, "3/5 measure checkpoints", "checkpoints"):
            self.measure_checkpoint(label, path)

    @property
    def runs(self) -> dict[str, FinetuneConfig]:
        """{run name: its fine-tuning config} (:func:`run_configs`)."""
        return run_configs(self.cfg, self.run_dir)

    def overlapped(self) -> None:
        """Stages 1-3 as one task graph in ``jobs`` worker processes (``pipeline/schedule.py``)."""
        self.timings.update(run_task_graph(self))

    # --- stages 1-3 as a graph of jobs (pipeline/schedule.py) ----------------------------------------------
    def graph(self) -> list[Job]:
        """Every job not yet done: fine-tuning runs (RL runs first: they take longest; each after the run it
        starts from), base circuits, and the checkpoints of finished runs not yet measured."""
        runs = self.runs
        trained_by_rl = sorted(runs, key=lambda n: finetune_method(runs[n].method).trainer != "rl")
        jobs: list[Job] = [self._finetune_job(n) for n in trained_by_rl if not self.finetuned(n)]
        jobs += [CircuitJob(t.name) for t in sorted(self.tasks, key=lambda t: t.name) if not self.done_circuit(t.name)]
        for name in runs:
            if self.finetuned(name):
                jobs += self.after(self._finetune_job(name))
        return jobs

    def _finetune_job(self, name: str) -> FinetuneJob:
        first = starts_from(name)
        return FinetuneJob(name, needs=(self._finetune_job(first),) if first is not None else ())

    def after(self, job: Job) -> list[Job]:
        """A finished run's checkpoints, each on each task (every task's own job: the last run's are shared)."""
        if not isinstance(job, FinetuneJob):
            return []
        return [
            MeasureJob(label, path, task.name, needs=(CircuitJob(task.name), job))
            for label, path in self.checkpoints_to_measure(job.run)
            for task in self.tasks
        ]

    def expected_jobs(self) -> int:
        """The graph's jobs now, and one measure job per task for each checkpoint an unfinished run will write."""
        later = sum(
            ft.steps // ft.checkpoint_every + (ft.steps % ft.checkpoint_every > 0)
            for name, ft in self.runs.items()
            if not self.finetuned(name)
        )
        return len(self.graph()) + len(self.tasks) * later

    def run_job(self, job: Job) -> None:
        """One job of the graph, in this process."""
        if isinstance(job, CircuitJob):
            self.circuit_of(job.task)
        elif isinstance(job, FinetuneJob):
            ft, out = self.runs[job.run], self.run_dir / "runs" / job.run
            finetune(ft, out, resume=out.exists(), log=lambda *a: None, shared_base=self.run_dir / "base-behaviour")
        elif isinstance(job, MeasureJob):
            self.measure_checkpoint(job.label, job.path, [job.task])
        else:
            raise TypeError(f"not a study's job: {job!r}")

    def measure_checkpoint(self, label: str, path: Path, task_names: list[str] | None = None) -> None:
        """Every base circuit's measurements in one checkpoint (``task_names``: only those tasks; tasks already
        measured are skipped)."""
        layout = HeadLayout.of(self.base.model)
        model = None
        for task in self.tasks:
            if (task_names is not None and task.name not in task_names) or self._measure_path(
                task.name, label
            ).exists():
                continue
            own = self.cfg.own_circuits.methods if self.cfg.own_circuits.enabled and self._is_last(label) else []
            shown = open_task(f"measure {label} on {task.name}", 1 + len(own) + self._wants_anatomy(label), "parts")
            if model is None:
                model = load_checkpoint(path, self.cfg.model)
                configure_threads(model, self.cfg.finetune.threads)
            bc = self.base_circuit(task.name)
            for method in own:  # written before the .npz, which marks the whole job done
                self.own_circuit(task.name, label, model, method)
                shown.advance()
            if self._wants_anatomy(label):
                a = self.cfg.anatomy
                anatomy = measure_anatomy(
                    self.base.model,
                    model,
                    self.base.tokenizer,
                    layout,
                    bc.evaluation,
                    bc.mask,
                    metric=a.metric,
                    min_block=a.min_block,
                    n_exact_heads=a.n_exact_heads,
                )
                summary = summarise_anatomy(anatomy, bc.circuit.heads, self.cfg.n_boot, self.cfg.seeds[0])
                write_json(self._anatomy_path(task.name, label), summary)
                shown.advance()
            m = circuit_measurements(
                model,
                layout,
                bc.evaluation,
                bc.mask,
                self.cfg.discovery.scoring_method,
                base=self.base.model,
                metric=bc.circuit.metric,
                total_cmap=self.cfg.total_cmap,
                top_m=self.cfg.cmap_top_m,
                base_cache=self.base_chunks(task.name),
            )
            save_measurements(self._measure_path(task.name, label), m)
            shown.advance()
            shown.finish()

    def _anatomy_path(self, task: str, label: str) -> Path:
        return self.run_dir / "measurements" / task / f"{label}.anatomy.json"

    def _wants_anatomy(self, label: str) -> bool:
        """Whether checkpoint ``label`` (``RUN@STEP``) is its run's last, and the anatomy is on."""
        return self.cfg.anatomy.enabled and self._is_last(label)

    def _is_last(self, label: str) -> bool:
        """Whether checkpoint ``label`` (``RUN@STEP``) is its run's last."""
        parsed = ModelLabel.parse(label)
        steps = [s for s, _ in checkpoint_dirs(self.run_dir / "runs" / str(parsed.run))]
        return bool(steps) and parsed.step == max(steps)

    # --- stage 4: statistics -------------------------------------------------------------------------------
    def behaviour(self) -> dict[str, dict]:
        return {
            name: read_record(self.run_dir / "runs" / name / "behaviour.json", BEHAVIOUR_TABLE, "a behaviour table")
            for name in run_configs(self.cfg)
        }

    def analyse(self) -> None:
        from forgetlens.analysis.summary import derived_results

        behaviour = self.behaviour()
        by_step = {
            name: {
                int(r["step"]): {"target_accuracy": r["target_accuracy"], "kl_forward": r["kl_forward"]}
                for r in table["checkpoints"]
            }
            for name, table in behaviour.items()
        }
        tasks = {}
        for task in track(self.tasks, "4/5 statistics", "tasks"):
            bc = self.base_circuit(task.name)
            tuned = {
                checkpoint_label(name, step): load_measurements(
                    self._measure_path(task.name, checkpoint_label(name, step))
                )
                for name in run_configs(self.cfg)
                for step, _ in checkpoint_dirs(self.run_dir / "runs" / name)
                if step > 0
            }
            cfg = self.cfg
            tasks[task.name] = analyse_task(bc, tuned, by_step, cfg.n_boot, cfg.discovery.seed, cfg.compared)
            anatomy = {
                label: read_json(self._anatomy_path(task.name, label))
                for label in tuned
                if self._anatomy_path(task.name, label).exists()
            }
            if anatomy:
                tasks[task.name]["anatomy"] = anatomy
            if self.cfg.own_circuits.enabled:
                tasks[task.name]["own_circuits"] = self.own_circuits_summary(task.name, list(tuned))
        runs = {}
        for name, table in behaviour.items():
            budget = read_record(self.run_dir / "runs" / name / "budget.json", BUDGET, "a run's budget record")
            rows = [{k: v for k, v in r.items() if k != "target_correct"} for r in table["checkpoints"]]
            ft = run_configs(self.cfg)[name]
            runs[name] = {
                "method": RunId.parse(name).group,  # sft, rl, sft-lrLR, sft-rl
                "seed": table["seed"],
                "lr": ft.learning_rate,
                "n_eval_records": table["n_eval_records"],
                "steps_to_threshold": table["steps_to_threshold"],
                "target_gain_per_question": [
                    after - before
                    for before, after in zip(
                        table["checkpoints"][0]["target_correct"], table["checkpoints"][-1]["target_correct"]
                    )
                ],
                "budget": {k: v for k, v in budget.items() if "this_session" not in k and k != "resumed_from"},
                **self._divergence(name),
                "checkpoints": rows,
            }
        layout = HeadLayout.of(self.base.model)
        _, eval_records = target_splits(next(iter(run_configs(self.cfg).values())))
        benchmarks = self.benchmarks()
        results = {
            "schema_version": SCHEMA_VERSION,
            "config": dataclasses.asdict(self.cfg),
            "seeds": list(self.cfg.seeds),
            "versions": versions(),
            "model": model_record(self.cfg.model),
            "layout": dataclasses.asdict(layout),
            "accuracy_threshold": self.cfg.finetune.accuracy_threshold,
            "runs": runs,
            "tasks": tasks,
            "benchmarks": benchmarks,
            "target_example": {"question": str(eval_records[0]["question"]), "answer": str(eval_records[0]["answer"])},
        }
        results.update(derived_results(results))
        results["timings"] = dict(self.timings)
        write_results(results, self.run_dir / "results.json")
        atomic_write_text(self.run_dir / "per_head.csv", per_head_csv(results))
        atomic_write_text(self.run_dir / "checkpoints.csv", checkpoints_csv(results))

    def _divergence(self, name: str) -> dict:
        """``{"divergence": ...}``: where run ``name``'s last checkpoint departs from the base in the text
        (``runs/NAME/divergence.json``), or nothing for a run measured before it existed."""
        path = self.run_dir / "runs" / name / "divergence.json"
        return {"divergence": read_record(path, DIVERGENCE, "a divergence record")} if path.exists() else {}

    def own_circuits_summary(self, task_name: str, tuned: list[str]) -> dict:
        """{method: ``analysis.own_circuits.summarise_method``} of one task's stored own circuits."""
        from forgetlens.analysis.own_circuits import summarise_method

        own, layout = self.cfg.own_circuits, HeadLayout.of(self.base.model)
        out = {}
        for method in own.methods:
            labels = ["base", *(f"base.{h}" for h in HALVES), *tuned]
            records = {
                label: self._read_own(task_name, label, method)
                for label in labels
                if self._own_path(task_name, label, method).exists()
            }
            out[method] = summarise_method(records, layout.n_total, own.n_null, own.delta, self.cfg.discovery.seed)
        return out

    def benchmarks(self) -> dict:
        """lm-eval scores of the base and of each run's last checkpoint, cached per model in benchmarks/."""
        from forgetlens.measure.benchmarks import run_benchmarks

        if not self.cfg.benchmarks.tasks:
            return {}
        models: dict[str, Path | None] = {"base": None}
        for name in run_configs(self.cfg):
            step, last = checkpoint_dirs(self.run_dir / "runs" / name)[-1]
            models[checkpoint_label(name, step)] = last
        scores = {}
        for label, path in track(list(models.items()), "4/5 standard benchmarks", "models"):
            cache = self.run_dir / "benchmarks" / f"{label}.json"
            if not cache.exists():
                model = self.base.model if path is None else load_checkpoint(path, self.cfg.model)
                cache.parent.mkdir(exist_ok=True)
                write_json(cache, run_benchmarks(model, self.base.tokenizer, self.cfg.benchmarks))
            scores[label] = read_json(cache)
        return {"tasks": list(self.cfg.benchmarks.tasks), "scores": scores}

    # --- stage 5: report ---------------------------------------------------------------------------------
    def report(self) -> None:
        """report.html from results.json as written, with every stage's time so far (``timings.json``)."""
        if self.render is not None:
            results = read_results(self.run_dir / "results.json")
            self.render({**results, "timings": dict(self.timings)}, self.run_dir / "report.html")

    def done_circuit(self, task_name: str) -> bool:
        own = self.cfg.own_circuits
        return (
            self._circuit_path(task_name).exists()
            and self._measure_path(task_name, "base").exists()
            and all(
                self._own_path(task_name, label, m).exists()
                for m in (own.methods if own.enabled else [])
                for label in ("base", *(f"base.{h}" for h in HALVES))
            )
        )

    def done(self, stage: str) -> bool:
        names = run_configs(self.cfg)
        if stage == "circuits":
            return all(self.done_circuit(t.name) for t in self.tasks)
        if stage == "finetune":
            return all(self.finetuned(n) for n in names)
        if stage == "measure":
            return all(
                self._measure_path(t.name, checkpoint_label(n, s)).exists()
                for t in self.tasks
                for n in names
                for s, _ in checkpoint_dirs(self.run_dir / "runs" / n)
                if s > 0
            )
        if stage == "report" and self.render is None:
            return True  # nothing to write
        return (self.run_dir / {"analyse": "results.json", "report": "report.html"}[stage]).exists()


def run_study(
    cfg: StudyConfig,
    run_dir: Path,
    resume: bool = False,
    overwrite: bool = False,
    log: Logger = print,
    jobs: int = 1,
    render: Renderer | None = None,
) -> dict:
    """Run (or resume) every stage; returns results.json's content.

    ``jobs`` > 1 runs stages 1-3 as one task graph in that many worker processes (results are identical).
    ``render(results, path)`` writes the report (the CLI passes ``report.html.write_report``; None: no report).
    """
    validate_study(cfg)
    run_dir = Path(run_dir)
    record = run_dir / "study_config.json"
    if resume and record.exists():
        check_resumable(record, cfg)
    if not is_main_process():
        return _run_stages(cfg, run_dir, resume, log, jobs, render)
    with claim_run_dir(run_dir, resume, overwrite, kind="study"):
        write_json(record, {"config": dataclasses.asdict(cfg), "seeds": list(cfg.seeds), "versions": versions()})
        return _run_stages(cfg, run_dir, resume, log, jobs, render)


def _run_stages(cfg: StudyConfig, run_dir: Path, resume: bool, log: Logger, jobs: int, render: Renderer | None) -> dict:
    """Every stage of :func:`run_study` in order, skipping finished ones on ``resume``."""
    torch.manual_seed(cfg.seeds[0])
    if world_size() > 1:  # launched on several GPUs: every process trains, then the main one does the rest alone
        wait_for_everyone()
        study = Study(cfg, run_dir, log if is_main_process() else (lambda *a: None))
        study.finetune()
        if not is_main_process():
            return {}
        jobs = 1
    study = Study(cfg, run_dir, log, jobs, render)
    overlapped_done = False
    redone = False  # once a stage runs, every later one runs too: what it wrote is their input
    for stage in STAGES:
        if stage == "finetune" and world_size() > 1:
            continue  # trained above by every process
        if resume and not redone and study.done(stage):
            log(f"{stage}: already complete, skipped")
            continue
        redone = True
        if jobs > 1 and stage in OVERLAPPED:  # the first unfinished one of them runs all that remain
            if not overlapped_done:
                study._timed("+".join(OVERLAPPED), study.overlapped)
                overlapped_done = True
            continue
        study._timed(stage, getattr(study, stage))
    return read_results(run_dir / "results.json")
