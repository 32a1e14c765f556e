"""Prior-capability tasks: clean/corrupted prompt pairs whose forgetting is measured (the fine-tuning targets
are in ``forgetlens.targets``)."""

from forgetlens.tasks.base import PriorTask, TaskBatch, TaskExample, encode_examples
from forgetlens.tasks.registry import TASKS, get_task, parse_task_list, task_names

__all__ = [
    "PriorTask",
    "TaskBatch",
    "TaskExample",
    "encode_examples",
    "TASKS",
    "get_task",
    "parse_task_list",
    "task_names",
]
