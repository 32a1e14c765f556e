"""Name -> prior task.  Add a task by writing a PriorTask subclass and listing it here.

``DEFAULT_TASKS`` are the embedded model's four capabilities: what a config's ``tasks: null`` means and what the
embedded model is pretrained on.  Tasks outside it (``greater_than_year``) are for real models, named in a
config's ``tasks``.
"""

from __future__ import annotations

from forgetlens.errors import ForgetlensError
from forgetlens.tasks.base import PriorTask
from forgetlens.tasks.fact_recall import FactRecallTask
from forgetlens.tasks.greater_than import GreaterThanTask
from forgetlens.tasks.greater_than_year import GreaterThanYearTask
from forgetlens.tasks.induction import InductionTask
from forgetlens.tasks.ioi import IOITask

TASKS: dict[str, type[PriorTask]] = {
    t.name: t for t in (InductionTask, IOITask, GreaterThanTask, FactRecallTask, GreaterThanYearTask)
}
DEFAULT_TASKS = ["induction", "ioi", "greater_than", "fact_recall"]


def task_names() -> list[str]:
    """Every registered task."""
    return list(TASKS)


def default_task_names() -> list[str]:
    """The tasks used when none are named (the embedded model's capabilities)."""
    return list(DEFAULT_TASKS)


def chosen_task_names(*choices: list[str] | None) -> list[str]:
    """The first non-empty list of task names in ``choices`` (most specific first), else the default set."""
    return list(next((c for c in choices if c), DEFAULT_TASKS))


def get_task(name: str) -> PriorTask:
    """The task called ``name``; a ForgetlensError listing the known names otherwise."""
    if name not in TASKS:
        raise ForgetlensError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]()


def parse_task_list(spec: str | None) -> list[PriorTask]:
    """Comma-separated task names (the default tasks when empty)."""
    if not spec:
        return [TASKS[name]() for name in DEFAULT_TASKS]
    return [get_task(name.strip()) for name in spec.split(",") if name.strip()]
