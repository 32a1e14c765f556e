"""The process pool behind ``forgetlens run --jobs N``: stages 1-3 of a study as one task graph.

Base circuits and fine-tuning runs start together (slow RL runs first); a run's checkpoints are measured as soon
as that run and every base circuit are done, so a worker whose run finished early measures while the slow runs
still train; RL from SFT starts when its SFT run is done.  Every job is a method of the study
(:meth:`GraphStudy.run_job`), run in a worker that keeps its study (and so its loaded base model) between jobs,
and each job's outputs are atomic, as in the stages run one after another.  The scheduler knows a study only
through :class:`GraphStudy`, so this module imports nothing of ``pipeline.study``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from forgetlens.analysis.runs import starts_from
from forgetlens.progress import open_task, relay, send_to
from forgetlens.utils import silence_known_warnings


class GraphStudy(Protocol):
    """What the scheduler needs of a study (``pipeline.study.Study`` is one)."""

    @property
    def cfg(self) -> Any:
        """The study's whole config: a worker builds its own study from it and ``run_dir``."""

    @property
    def run_dir(self) -> Path:
        """The study's run directory."""

    @property
    def jobs(self) -> int:
        """Worker processes to run the graph in."""

    @property
    def runs(self) -> dict[str, Any]:
        """{run name: its fine-tuning config (``method``, ``steps``, ``checkpoint_every``)}."""

    @property
    def tasks(self) -> Sequence[Any]:
        """The prior tasks (each with a ``name``) whose base circuits the study finds."""

    def done_circuit(self, task_name: str) -> bool:
        """Whether task ``task_name``'s base circuit is already found."""

    def finetuned(self, name: str) -> bool:
        """Whether run ``name`` has finished training."""

    def checkpoints_to_measure(self, name: str) -> list[tuple[str, Path]]:
        """(label, path) of every checkpoint of run ``name`` not yet measured."""

    def run_job(self, kind: str, *args) -> None:
        """One job: ``circuits`` (a task), ``finetune`` (a run) or ``measure`` (a checkpoint on some tasks)."""


def run_task_graph(study: GraphStudy) -> dict[str, float]:
    """Stages 1-3 of ``study`` as one task graph in ``study.jobs`` worker processes (results identical to running
    them in turn); returns each job kind's summed worker seconds.

    Base circuits and fine-tuning runs start together (slow RL runs first); a run's checkpoints are
    measured as soon as that run and every base circuit are done, so a worker whose run finished early
    measures while the slow runs still train.  Each job's outputs are atomic, as in the stages.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    runs = study.runs
    circuits_left = {t.name for t in study.tasks if not study.done_circuit(t.name)}
    waiting = [name for name in runs if study.finetuned(name)]  # trained, checkpoints not yet queued
    expected = len(study.tasks) * (  # one measure job per (checkpoint, task)
        sum(len(study.checkpoints_to_measure(n)) for n in waiting)
        + sum(
            ft.steps // ft.checkpoint_every + (ft.steps % ft.checkpoint_every > 0)
            for n, ft in runs.items()
            if not study.finetuned(n)
        )
    )
    seconds = {"circuits": 0.0, "finetune": 0.0, "measure": 0.0}
    args = (type(study), study.cfg, study.run_dir)
    with worker_pool(study.jobs) as pool:
        pending = {}

        def startable(name: str) -> bool:  # RL from SFT waits for its SFT run
            first = starts_from(name)
            return first is None or study.finetuned(first)

        queued = set()
        for name in sorted((n for n in runs if not study.finetuned(n)), key=lambda n: runs[n].method != "rl"):
            if startable(name):
                pending[pool.submit(_job, *args, "finetune", name)] = ("finetune", name)
                queued.add(name)
        for task in sorted(circuits_left):
            pending[pool.submit(_job, *args, "circuits", task)] = ("circuits", task)
        shown = open_task("1-3/5 circuits, fine-tuning, measurement", len(pending) + expected, "jobs", eta=False)
        while pending or waiting:
            if not circuits_left:
                for name in waiting:  # each task of a checkpoint is its own job: the last run's are shared
                    for label, path in study.checkpoints_to_measure(name):
                        for prior in study.tasks:
                            job = pool.submit(_job, *args, "measure", label, path, [prior.name])
                            pending[job] = ("measure", label)
                waiting = []
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                kind, name = pending.pop(future)
                seconds[kind] += future.result()  # re-raises a worker's error here
                if kind == "circuits":
                    circuits_left.discard(name)
                elif kind == "finetune":
                    waiting.append(name)
                    for later in runs:
                        if later not in queued and not study.finetuned(later) and starts_from(later) == name:
                            pending[pool.submit(_job, *args, "finetune", later)] = ("finetune", later)
                            queued.add(later)
                shown.advance()
        shown.finish()
    return {f"{kind}_worker_seconds": round(v, 2) for kind, v in seconds.items()}


@contextmanager
def worker_pool(jobs: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``jobs`` spawned worker processes whose progress shows in this process's display, each ending
    when this process dies."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with (
        relay(context) as events,
        ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_start_worker, initargs=(os.getpid(), events)
        ) as pool,
    ):
        yield pool


def _start_worker(parent: int, events) -> None:
    """Worker initializer: show its progress through the study's ``events`` queue, and end this worker when the
    study process ``parent`` dies (a killed study must not leave workers writing into its run directory; Linux
    only, elsewhere a no-op)."""
    import ctypes
    import signal
    import sys

    send_to(events)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the study died while this worker was still starting
            os._exit(1)


_worker_study: GraphStudy | None = None
"""A worker's study, kept across its jobs so the base model and circuits load once per process."""


def _job(kind_of_study: Callable[..., GraphStudy], cfg: Any, run_dir: Path, kind: str, *args) -> float:
    """One job of :func:`run_task_graph` in a worker process; returns its wall time in seconds."""
    global _worker_study
    start = time.perf_counter()
    silence_known_warnings()
    if _worker_study is None or (_worker_study.cfg, _worker_study.run_dir) != (cfg, Path(run_dir)):
        _worker_study = kind_of_study(cfg, run_dir, log=lambda *a: None)
    _worker_study.run_job(kind, *args)
    return time.perf_counter() - start
