"""Thin wrappers that build TRL trainers with the study's settings, spelled out.

TRL's defaults are tuned for GPUs and large models (``bf16=True``,
``gradient_checkpointing=True``, ``learning_rate=1e-6``,
``max_completion_length=512``, ``loss_type="dapo"``); every one of them is set
here from :class:`FinetuneConfig`, so a run records what it actually did.
Both trainers read the training schedule sequentially, so SFT and RL see the
same prompts in the same order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from forgetlens.config.options import LOSS_TYPES, FinetuneConfig
from forgetlens.errors import ForgetlensError
from forgetlens.targets.rewards import format_reward, score_reply
from forgetlens.training.dynamic_sampling import with_dynamic_sampling
from forgetlens.training.rollouts import with_shared_prefill_generation
from forgetlens.training.shared_prompt import with_shared_prompt_scoring

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def batching(cfg: FinetuneConfig, sequences_per_step: int) -> tuple[int, int]:
    """(per-device batch, gradient-accumulation steps) that make one optimizer step of ``sequences_per_step``
    sequences over all devices (``WORLD_SIZE`` under accelerate/torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    micro = cfg.micro_batch or sequences_per_step // world
    if micro < 1 or sequences_per_step % (micro * world):
        raise ForgetlensError(
            f"finetune.micro_batch: {micro} x {world} device(s) must divide the batch of "
            f"{sequences_per_step} sequences per step"
        )
    return micro, sequences_per_step // (micro * world)


def _common_args(cfg: FinetuneConfig, out_dir: Path, lr: float, sequences_per_step: int) -> dict:
    micro, accumulation = batching(cfg, sequences_per_step)
    return dict(
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        output_dir=str(out_dir),
        max_steps=cfg.steps,
        learning_rate=lr,
        lr_scheduler_type="constant_with_warmup" if cfg.warmup_steps else "constant",
        warmup_steps=cfg.warmup_steps,
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16,
        fp16=False,
        activation_checkpointing=cfg.gradient_checkpointing,  # transformers 5's name for gradient checkpointing
        save_strategy="steps",
        save_steps=cfg.checkpoint_every,
        save_total_limit=None,
        save_only_model=False,
        logging_steps=1,
        logging_nan_inf_filter=False,  # a non-finite loss is logged as it is: divergence_stop reads it
        report_to="none",
        disable_tqdm=True,  # forgetlens shows the steps itself (StepProgress), in worker processes too
        use_cpu=not _cuda(),
        dataloader_num_workers=0,
        train_sampling_strategy="sequential",
    )


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _lora(cfg: FinetuneConfig):
    if cfg.lora_rank <= 0:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=2 * cfg.lora_rank,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def _quiet_datasets() -> None:
    """datasets' own bars (tokenising a few hundred rows) off: they would interleave with forgetlens's display."""
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()


def step_progress(description: str):
    """A trainer callback that shows ``description``'s optimizer steps (forgetlens.progress), resumed runs from
    the step they resume at."""
    from transformers import TrainerCallback

    from forgetlens.progress import open_task

    class StepProgress(TrainerCallback):
        task = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.task = open_task(description, state.max_steps, "steps", initial=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if self.task is not None:
                self.task.advance()

        def on_train_end(self, args, state, control, **kwargs):
            if self.task is not None:
                self.task.finish()

    return StepProgress()


def with_regularizers(trainer_cls: type) -> type:
    """A subclass of a TRL trainer whose loss adds ``regularizers`` (``training/regularizers.py``); each term's
    mean since the last log goes into the trainer's logs as ``reg/NAME``."""

    class Regularized(trainer_cls):
        def __init__(self, *args, regularizers=(), **kwargs):
            super().__init__(*args, **kwargs)
            self.regularizers = list(regularizers)
            self._reg_sums = {r.name: [0.0, 0] for r in self.regularizers}

        def compute_loss(self, model: PreTrainedModel, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if not self.regularizers:
                return result
            loss, outputs = result if return_outputs else (result, None)
            for reg in self.regularizers:
                term = reg(model, inputs, self.state.global_step)
                loss = loss + term
                total = self._reg_sums[reg.name]
                total[0], total[1] = total[0] + float(term.detach()), total[1] + 1
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            for name, total in self._reg_sums.items():
                if total[1]:
                    logs[f"reg/{name}"] = total[0] / total[1]
                    total[0], total[1] = 0.0, 0
            super().log(logs, *args, **kwargs)

        def _save_checkpoint(self, model: PreTrainedModel, trial):
            save_checkpoint_staged(self, lambda: super(Regularized, self)._save_checkpoint(model, trial))

    Regularized.__name__ = f"Regularized{trainer_cls.__name__}"
    return Regularized


STAGING_DIR = ".partial"
"""Folder under a run's ``checkpoints/`` where a checkpoint is written before it is renamed into place."""


def save_checkpoint_staged(trainer, save) -> None:
    """Run the trainer's own checkpoint ``save`` into ``checkpoints/.partial/checkpoint-N``, then rename it to
    ``checkpoints/checkpoint-N``: a write that fails (a full disk) leaves no half-made checkpoint behind, and is
    one ForgetlensError naming the file.  With several processes every rank writes its part first."""
    import errno
    import shutil

    from safetensors import SafetensorError

    from forgetlens.utils import apply_umask, first_line, is_main_process, wait_for_everyone

    root = Path(trainer.args.output_dir)
    name = f"checkpoint-{trainer.state.global_step}"
    staging = root / STAGING_DIR
    if root.is_symlink() or staging.is_symlink() or (staging / name).is_symlink():
        raise ForgetlensError(f"{staging / name}: a symbolic link in the run's checkpoint folder; refusing to write")
    if is_main_process() and staging.exists():
        shutil.rmtree(staging)  # left by an earlier write that failed or was killed: forgetlens's own folder
    wait_for_everyone()
    trainer.args.output_dir = str(staging)
    only_model = trainer.args.save_only_model
    if trainer.state.global_step >= trainer.state.max_steps and not getattr(trainer, "keep_optimizer", True):
        trainer.args.save_only_model = True  # the run ends here: nothing resumes from this checkpoint
    try:
        save()
    except (OSError, SafetensorError, RuntimeError) as exc:
        if is_main_process():
            shutil.rmtree(staging / name, ignore_errors=True)
        where = exc.filename if isinstance(exc, OSError) and exc.filename else staging / name
        free = shutil.disk_usage(root).free
        text = str(exc)
        full = (
            (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left" in text or "os error 28" in text
        )
        if full or ("write failed" in text and free < 64 * 2**20):  # torch's own words for a full disk
            raise ForgetlensError(
                f"{where}: no space left on the device ({free // 2**20} MiB free there) while writing {name}; "
                "nothing of it was kept"
            ) from None
        raise ForgetlensError(f"{where}: could not write {name} ({first_line(exc)}); nothing of it was kept") from None
    finally:
        trainer.args.output_dir = str(root)
        trainer.args.save_only_model = only_model
    wait_for_everyone()
    if is_main_process():
        for written in (staging / name).rglob("*"):  # safetensors writes weights 0600; a team shares run folders
            if written.is_file() and not written.is_symlink():
                apply_umask(written)
        os.replace(staging / name, root / name)
        shutil.rmtree(staging)  # what else the save wrote beside the checkpoint (TRL's model card)
    wait_for_everyone()


def build_sft_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset,
    cfg: FinetuneConfig,
    out_dir: Path,
    callbacks=(),
    regularizers=(),
):
    """TRL SFTTrainer on prompt/completion rows; loss on the completion tokens only (plus ``regularizers``)."""
    from trl import SFTConfig, SFTTrainer

    _quiet_datasets()
    args = SFTConfig(
        **_common_args(cfg, out_dir, cfg.lr_sft, cfg.prompts_per_step),
        completion_only_loss=True,
        packing=False,
        max_length=None,
        dataset_num_proc=None,
    )
    return _quiet(
        with_regularizers(SFTTrainer)(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=_lora(cfg),
            callbacks=[step_progress(f"train {out_dir.parent.name}"), *callbacks],
            regularizers=regularizers,
        ),
        cfg,
    )


def _quiet(trainer, cfg: FinetuneConfig):
    """Drop transformers' PrinterCallback (it prints every log line when the progress bar is off; the log
    history still goes to ``training_log.json`` and to any configured logger), tell the checkpoint writer
    whether the last checkpoint keeps its resume state (``cfg.keep_optimizer``; ``save_checkpoint_staged``), and
    stop at the first step whose loss or gradient norm is not finite (:func:`divergence_stop`)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.keep_optimizer = cfg.keep_optimizer
    trainer.diverged = None
    trainer.add_callback(divergence_stop(trainer))
    return trainer


def divergence_stop(trainer):
    """A callback that ends training at the first logged step whose loss or gradient norm is NaN or infinite,
    without saving that step, and leaves ``trainer.diverged = (step, name, value)`` for the caller to report."""
    import math

    from transformers import TrainerCallback

    class DivergenceStop(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            for name in ("loss", "grad_norm"):
                value = (logs or {}).get(name)
                if isinstance(value, float | int) and not math.isfinite(value) and trainer.diverged is None:
                    trainer.diverged = (state.global_step, name, value)
                    control.should_training_stop = True
                    control.should_save = False
            return control

    return DivergenceStop()


def make_reward_function(strict: bool = False) -> Callable[..., list[float]]:
    """Correctness reward for TRL: 1 when the completion answers its record correctly, else 0."""

    def correctness(completions, record, **kwargs) -> list[float]:
        return [score_reply(_text(c), json.loads(r), strict) for c, r in zip(completions, record)]

    correctness.__name__ = "correctness"
    return correctness


def _format(completions, **kwargs) -> list[float]:
    return [format_reward(_text(c)) for c in completions]


def _text(completion) -> str:
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return completion[0]["content"] if completion else ""
    return completion


def _vllm_available() -> bool:
    """True when vLLM imports; otherwise one warning, and RL generates with the model's own ``generate``."""
    import importlib.util
    import warnings

    if importlib.util.find_spec("vllm") is not None:
        return True
    warnings.warn(
        "rl.use_vllm is set but vLLM is not installed (pip install vllm); generating with plain generate instead",
        UserWarning,
        stacklevel=3,
    )
    return False


def build_rl_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset,
    cfg: FinetuneConfig,
    out_dir: Path,
    callbacks=(),
    regularizers=(),
):
    """TRL GRPOTrainer with the verifiable reward; Dr.GRPO and beta = 0 by default (plus ``regularizers``)."""
    from trl import GRPOConfig, GRPOTrainer

    _quiet_datasets()
    rl = cfg.rl
    if rl.loss_type not in LOSS_TYPES:
        raise ForgetlensError(f"rl.loss_type must be one of {', '.join(LOSS_TYPES)}, got {rl.loss_type!r}")
    loss_type, scale = rl.loss_type, rl.scale_rewards
    if loss_type == "reinforce":  # on-policy, one update per batch, group-mean baseline, no std scaling
        loss_type, scale = "dr_grpo", "none"
    reward_funcs, weights = [make_reward_function()], [1.0]
    if rl.format_reward > 0:
        reward_funcs.append(_format)
        weights.append(rl.format_reward)
    use_vllm = rl.use_vllm and _vllm_available()
    # dynamic sampling: a generation round samples rl.oversample times the groups a step trains on
    common = _common_args(cfg, out_dir, cfg.lr_rl, cfg.prompts_per_step * rl.num_generations * rl.oversample)
    args = GRPOConfig(
        **common,
        steps_per_generation=common["gradient_accumulation_steps"],  # one generation round per optimizer step
        num_iterations=1,
        num_generations=rl.num_generations,
        loss_type=loss_type,
        scale_rewards=scale,
        beta=rl.beta,
        temperature=rl.temperature,
        top_p=1.0,
        top_k=0,
        max_completion_length=rl.max_completion_length,
        reward_weights=weights,
        shuffle_dataset=False,
        use_vllm=use_vllm,
        log_completions=False,
    )
    trainer_cls = with_shared_prompt_scoring(GRPOTrainer) if rl.shared_prompt_scoring else GRPOTrainer
    if rl.shared_prefill_generation:
        trainer_cls = with_shared_prefill_generation(trainer_cls)
    if rl.oversample > 1:
        trainer_cls = with_dynamic_sampling(trainer_cls, cfg.prompts_per_step)
    return _quiet(
        with_regularizers(trainer_cls)(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=_lora(cfg),
            callbacks=[step_progress(f"train {out_dir.parent.name}"), *callbacks],
            regularizers=regularizers,
        ),
        cfg,
    )
