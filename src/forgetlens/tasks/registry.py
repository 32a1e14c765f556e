"""Name -> prior task.  Add a task by writing a PriorTask subclass and listing it here."""

from __future__ import annotations

from forgetlens.errors import ForgetlensError
from forgetlens.tasks.base import PriorTask
from forgetlens.tasks.fact_recall import FactRecallTask
from forgetlens.tasks.greater_than import GreaterThanTask
from forgetlens.tasks.induction import InductionTask
from forgetlens.tasks.ioi import IOITask

TASKS: dict[str, type[PriorTask]] = {
    t.name: t for t in (InductionTask, IOITask, GreaterThanTask, FactRecallTask)
}


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> PriorTask:
    """The task called ``name``; a ForgetlensError listing the known names otherwise."""
    if name not in TASKS:
        raise ForgetlensError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]()


def parse_task_list(spec: str | None) -> list[PriorTask]:
    """Comma-separated task names (all tasks when empty)."""
    if not spec:
        return [cls() for cls in TASKS.values()]
    return [get_task(name.strip()) for name in spec.split(",") if name.strip()]
