"""Forgetting on standard benchmarks (MMLU, HellaSwag, TruthfulQA, Winogrande, ARC, IFEval) through
lm-evaluation-harness, reading only local data.

lm-eval is optional (``pip install lm-eval``).  Its tasks name a hub dataset; to run offline, either fill the
local datasets cache beforehand (``HF_DATASETS_OFFLINE=1`` is set here, so nothing is fetched) or point
``benchmarks.include_path`` at a folder of lm-eval task YAMLs whose ``dataset_path``/``dataset_kwargs.data_files``
name local files.  A benchmark that cannot run gets a one-line warning and the study goes on without it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from forgetlens.config.options import BenchmarkConfig

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


PRIMARY_METRICS = ("acc_norm,none", "acc,none", "prompt_level_strict_acc,none", "exact_match,none", "mc2,none")
"""The score kept per benchmark: the first of these that lm-eval reports (IFEval: prompt-level strict accuracy;
TruthfulQA mc2: its mc2 score)."""


_TASK_MANAGERS: dict = {}


class BenchmarkWarning(UserWarning):
    """A requested benchmark was skipped (lm-eval missing, or its data not on disk)."""


def lm_eval_available() -> bool:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return False
    return True


def run_benchmarks(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cfg: BenchmarkConfig) -> dict[str, dict]:
    """{task: {"score", "metric", "n"}} for every task of ``cfg`` that could run; warnings for the others."""
    if not cfg.tasks:
        return {}
    if not lm_eval_available():
        warnings.warn(
            f"benchmarks.tasks asks for {', '.join(cfg.tasks)} but lm-eval is not installed; "
            f"`pip install lm-eval` to measure them (the study goes on without them)",
            BenchmarkWarning,
            stacklevel=2,
        )
        return {}
    with offline_hub():
        return _run(model, tokenizer, cfg)


@contextmanager
def offline_hub() -> Iterator[None]:
    """No hub access inside: the environment variables, and the flags that ``datasets`` and ``huggingface_hub``
    read from them at import time (they may have been imported already, by the trainers)."""
    import datasets.config
    import huggingface_hub.constants as hub

    keys = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    saved = ({k: os.environ.get(k) for k in keys}, datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE)
    os.environ.update(dict.fromkeys(keys, "1"))
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for key, value in saved[0].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = saved[1]
        hub.HF_HUB_OFFLINE = saved[2]


def _run(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cfg: BenchmarkConfig) -> dict[str, dict]:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from forgetlens.models.forward import model_device

    device = str(model_device(model))
    lm = HFLM(pretrained=model, tokenizer=tokenizer, device=device, batch_size=cfg.batch_size)
    if cfg.include_path not in _TASK_MANAGERS:  # indexing lm-eval's task folder takes seconds: once per process
        _TASK_MANAGERS[cfg.include_path] = (
            TaskManager(include_path=cfg.include_path) if cfg.include_path else TaskManager()
        )
    manager = _TASK_MANAGERS[cfg.include_path]
    out = {}
    for task in cfg.tasks:
        try:
            result = simple_evaluate(
                model=lm,
                tasks=[task],
                limit=cfg.limit,
                task_manager=manager,
                bootstrap_iters=0,
                log_samples=False,
                random_seed=cfg.seed,
                numpy_random_seed=cfg.seed,
                torch_random_seed=cfg.seed,
                fewshot_random_seed=cfg.seed,
                verbosity="ERROR",
            )
        except Exception as exc:  # lm-eval raises many kinds for missing data; each becomes one warning line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            warnings.warn(
                f"benchmark {task!r} skipped ({type(exc).__name__}: {first}); put its data in the local "
                f"datasets cache or give benchmarks.include_path with a task YAML naming local files",
                BenchmarkWarning,
                stacklevel=2,
            )
            continue
        scores = result["results"].get(task, {})
        metric = next((m for m in PRIMARY_METRICS if m in scores), None)
        if metric is None:
            warnings.warn(
                f"benchmark {task!r}: none of {', '.join(PRIMARY_METRICS)} among its results ({', '.join(scores)})",
                BenchmarkWarning,
                stacklevel=2,
            )
            continue
        n = result.get("n-samples", {}).get(task, {}).get("effective")
        out[task] = {"score": float(scores[metric]), "metric": metric.split(",")[0], "n": n}
    return out
