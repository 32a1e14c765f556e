"""Name -> prior task.  Add a task by writing a PriorTask subclass and listing it here.

A task a model cannot do measures nothing about its circuits, so the default set depends on the model:
``EMBEDDED_TASKS`` are the embedded model's four capabilities (it copies from the start but does not do
induction, and it never saw the year template); ``REAL_MODEL_TASKS`` are for pretrained models (SmolLM2-135M
answers greater-than only in its year form).  A config's ``tasks: null`` means the set for its model.
"""

from __future__ import annotations

from forgetlens.errors import ForgetlensError
from forgetlens.models.names import is_embedded
from forgetlens.tasks.base import PriorTask
from forgetlens.tasks.copying import CopyingTask
from forgetlens.tasks.fact_recall import FactRecallTask
from forgetlens.tasks.greater_than import GreaterThanTask
from forgetlens.tasks.greater_than_year import GreaterThanYearTask
from forgetlens.tasks.induction import InductionTask
from forgetlens.tasks.ioi import IOITask

TASKS: dict[str, type[PriorTask]] = {
    t.name: t for t in (InductionTask, IOITask, GreaterThanYearTask, FactRecallTask, CopyingTask, GreaterThanTask)
}
EMBEDDED_TASKS = ["copying", "ioi", "greater_than", "fact_recall"]
REAL_MODEL_TASKS = ["induction", "ioi", "greater_than_year", "fact_recall"]


def task_names() -> list[str]:
    """Every registered task."""
    return list(TASKS)


def default_task_names(model: str | None = None) -> list[str]:
    """The tasks used when none are named: the embedded model's (``model`` None or ``embedded``), else the set
    for pretrained models."""
    return list(EMBEDDED_TASKS if is_embedded(model) else REAL_MODEL_TASKS)


def chosen_task_names(*choices: list[str] | None, model: str | None = None) -> list[str]:
    """The first non-empty list of task names in ``choices`` (most specific first), else ``model``'s default set."""
    return list(next((c for c in choices if c), default_task_names(model)))


def get_task(name: str) -> PriorTask:
    """The task called ``name``; a ForgetlensError listing the known names otherwise."""
    if name not in TASKS:
        raise ForgetlensError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]()


def parse_task_list(spec: str | None, model: str | None = None) -> list[PriorTask]:
    """Comma-separated task names (``model``'s default tasks when empty)."""
    if not spec:
        return [TASKS[name]() for name in default_task_names(model)]
    return [get_task(name.strip()) for name in spec.split(",") if name.strip()]
