"""Prior-capability tasks (clean/corrupted pairs), and the fine-tuning targets beside them (science QA,
comparisons, their rewards, general prompts)."""

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
