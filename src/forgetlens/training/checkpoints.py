"""Checkpoint directories of a fine-tuning run: listing, loading, and run-directory hygiene."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from forgetlens.errors import ForgetlensError
from forgetlens.utils import apply_umask, first_line

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, directory) of every complete checkpoint under ``run_dir/checkpoints``, by step.  A symbolic link is
    never a checkpoint (nothing forgetlens reads, resumes or deletes may lie outside the run directory); a
    ``checkpoints`` folder that is one is refused."""
    root = Path(run_dir) / "checkpoints"
    if root.is_symlink():
        raise ForgetlensError(f"{root}: a symbolic link, not forgetlens's checkpoint folder; refusing to use it")
    out = []
    if root.exists():
        for d in root.iterdir():
            m = _CHECKPOINT.match(d.name)
            if d.is_symlink() or not m:
                continue
            if d.is_dir() and ((d / "model.safetensors").exists() or (d / "adapter_model.safetensors").exists()):
                out.append((int(m.group(1)), d))
    return sorted(out)


RESUME_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth")
"""The files of a trainer checkpoint that only resuming its training reads (the optimizer's moments are twice the
weights' size)."""


def check_resume_state(checkpoint: Path) -> None:
    """Read every :data:`RESUME_STATE` file of ``checkpoint`` the way the trainer will (``weights_only``: no pickled
    code runs) before it does, so that a damaged or planted one is one ForgetlensError naming it, not a traceback
    from inside the trainer."""
    import torch
    from transformers.trainer_pt_utils import safe_globals  # the numpy types the trainer's RNG state holds

    for name in RESUME_STATE:
        path = Path(checkpoint) / name
        if path.is_symlink():
            raise ForgetlensError(f"{path}: a symbolic link, not the training state forgetlens wrote")
        if not path.exists():
            continue
        try:
            with safe_globals():  # as the trainer reads it: weights_only, numpy arrays allowed, nothing else
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001  (torch raises many kinds for a file that is not its own)
            raise ForgetlensError(
                f"{path}: not the training state forgetlens wrote ({type(exc).__name__}: {first_line(exc)[:120]}); "
                "delete this checkpoint to resume from the one before it"
            ) from None


def drop_resume_state(run_dir: Path) -> int:
    """Delete :data:`RESUME_STATE` from every checkpoint of a completed run (files the trainer wrote there);
    returns the bytes freed."""
    freed = 0
    for _, d in checkpoint_dirs(run_dir):
        for name in RESUME_STATE:
            path = d / name
            if path.is_file() and not path.is_symlink():
                freed += path.stat().st_size
                path.unlink()
    return freed


def remove_checkpoint(run_dir: Path, directory: Path) -> None:
    """Delete one checkpoint directory forgetlens wrote: ``run_dir/checkpoints/checkpoint-N`` itself, never a
    symbolic link or anything it points to (a ForgetlensError otherwise)."""
    import shutil

    root = Path(run_dir) / "checkpoints"
    if (
        directory.parent != root
        or not _CHECKPOINT.match(directory.name)
        or directory.is_symlink()
        or root.is_symlink()
        or not directory.is_dir()
    ):
        raise ForgetlensError(f"{directory}: not a checkpoint directory of {run_dir}; refusing to delete it")
    shutil.rmtree(directory)


def save_model_dir(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> None:
    """``model`` and ``tokenizer`` saved as a model directory at ``target``, through a temporary directory and a
    rename; a failed write (a full disk) leaves nothing and is one ForgetlensError naming the file."""
    import shutil

    from safetensors import SafetensorError

    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # forgetlens's own leftover of an earlier failed write
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        for written in tmp.rglob("*"):  # safetensors writes weights 0600: the folder follows the umask instead
            if written.is_file() and not written.is_symlink():
                apply_umask(written)
        tmp.replace(target)
    except (OSError, SafetensorError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        where = exc.filename if isinstance(exc, OSError) and exc.filename else tmp
        raise ForgetlensError(
            f"{where}: could not write {target.name} ({first_line(exc)}); nothing of it was kept"
        ) from None


def load_checkpoint(path: Path, base_spec: str) -> PreTrainedModel:
    """A checkpoint's model in eval mode on the default device: a full model directory, or a PEFT adapter merged
    onto the base.  Safetensors only, no code from the folder; a file that does not load is one ForgetlensError
    naming it."""
    from forgetlens.models.loading import default_device, load_model, load_weights, refuse_custom_code

    path = Path(path)
    refuse_custom_code(path, path)
    if (path / "adapter_config.json").exists():
        return load_adapter(path, load_model(base_spec).model, base_spec).eval()
    return load_weights(path, path).to(default_device()).eval()


def load_adapter(path: Path, base: PreTrainedModel, base_spec: str) -> PreTrainedModel:
    """The PEFT adapter in ``path`` merged onto ``base``: its weights must be ``adapter_model.safetensors`` and
    fit the base model's shapes."""
    from peft import PeftModel
    from safetensors import SafetensorError

    weights = path / "adapter_model.safetensors"
    if not weights.exists():
        raise ForgetlensError(
            f"adapter {path}: no adapter_model.safetensors; forgetlens loads safetensors weights only"
        )
    try:
        return PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    except SafetensorError as exc:
        raise ForgetlensError(f"adapter {weights}: truncated or not safetensors ({first_line(exc)})") from None
    except (RuntimeError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ForgetlensError(
            f"adapter {path} does not fit the base model {base_spec} (made on another base?): {first_line(exc)}"
        ) from None
