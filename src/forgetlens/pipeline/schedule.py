"""The process pool behind ``forgetlens run --jobs N``: a graph of typed jobs, each stating the jobs whose outputs
it reads.

A job starts once every job it needs has run (or was never in the graph: done before, by an earlier session); a
finished job may add jobs that could not be known before it ran (a fine-tuning run's checkpoints to measure).  The
graph comes from a :class:`GraphStudy`, and each job runs in a worker that keeps its study (and so its loaded base
model) between jobs; each job's outputs are atomic.  The scheduler knows neither what a job does nor what a study
is, only :class:`Job` and :class:`GraphStudy`, so this module imports nothing of ``pipeline.study``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from forgetlens.progress import open_task, relay, send_to
from forgetlens.utils import release_freed_memory, silence_known_warnings


class Job(Hashable, Protocol):
    """One job of a graph: hashable (a frozen dataclass), and picklable to reach a worker."""

    @property
    def kind(self) -> str:
        """What kind of job it is (``circuits``, ``finetune``, ``measure``): its worker time is summed per kind."""

    @property
    def needs(self) -> tuple[Job, ...]:
        """The jobs whose outputs it reads."""


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

    def graph(self) -> list[Job]:
        """Every job not yet done whose existence is known now, in the order to start them."""

    def after(self, job: Job) -> list[Job]:
        """The jobs that exist only once ``job`` has run."""

    def expected_jobs(self) -> int:
        """How many jobs the graph will have run when it is done (the progress display's total)."""

    def run_job(self, job: Job) -> None:
        """Run one job in this process."""


def ready(todo: Sequence[Job], done: set[Job], known: set[Job]) -> list[Job]:
    """The jobs of ``todo`` that can start: every job each needs has run (``done``) or is not in the graph
    (``known``: every job the graph has held), in ``todo``'s order."""
    return [job for job in todo if all(need in done or need not in known for need in job.needs)]


def run_task_graph(study: GraphStudy) -> dict[str, float]:
    """Every job of ``study``'s graph in ``study.jobs`` worker processes, each as soon as the jobs it needs have run
    (results identical to running the stages in turn); returns each job kind's summed worker seconds."""
    from concurrent.futures import FIRST_COMPLETED, wait

    todo = list(study.graph())
    known, done = set(todo), set[Job]()
    seconds: dict[str, float] = {}
    args = (type(study), study.cfg, study.run_dir)
    with worker_pool(study.jobs) as pool:
        pending: dict[Any, Job] = {}
        shown = open_task("1-3/5 circuits, fine-tuning, measurement", study.expected_jobs(), "jobs", eta=False)
        while todo or pending:
            for job in ready(todo, done, known):
                todo.remove(job)
                pending[pool.submit(_job, *args, job)] = job
            if not pending:
                raise RuntimeError(f"jobs that wait on each other: {todo}")
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                seconds[job.kind] = seconds.get(job.kind, 0.0) + future.result()  # re-raises a worker's error here
                done.add(job)
                new = [later for later in study.after(job) if later not in known]
                known.update(new)
                todo.extend(new)
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


def _job(kind_of_study: Callable[..., GraphStudy], cfg: Any, run_dir: Path, job: Job) -> float:
    """One job of :func:`run_task_graph` in a worker process; returns its wall time in seconds."""
    global _worker_study
    start = time.perf_counter()
    silence_known_warnings()
    if _worker_study is None or (_worker_study.cfg, _worker_study.run_dir) != (cfg, Path(run_dir)):
        _worker_study = kind_of_study(cfg, run_dir, log=lambda *a: None)
    _worker_study.run_job(job)
    release_freed_memory()  # what the job freed (a trainer's gradients and optimizer state) goes back to the system
    return time.perf_counter() - start
