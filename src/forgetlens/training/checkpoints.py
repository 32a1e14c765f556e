"""Checkpoint directories of a fine-tuning run: listing, loading, and run-directory hygiene."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from forgetlens.errors import ForgetlensError

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, directory) of every complete checkpoint under ``run_dir/checkpoints``, by step."""
    root = Path(run_dir) / "checkpoints"
    out = []
    if root.exists():
        for d in root.iterdir():
            m = _CHECKPOINT.match(d.name)
            if m and d.is_dir() and ((d / "model.safetensors").exists() or (d / "adapter_model.safetensors").exists()):
                out.append((int(m.group(1)), d))
    return sorted(out)


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber an existing run unless asked; ``overwrite`` starts it afresh."""
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if overwrite:
            shutil.rmtree(run_dir)
        elif not resume:
            raise ForgetlensError(
                f"run directory {run_dir} already exists; pass --resume to continue it or --overwrite to start again"
            )
    run_dir.mkdir(parents=True, exist_ok=True)


def load_checkpoint(path: Path, base_spec: str):
    """A checkpoint's model in eval mode on the default device: a full model directory, or a PEFT adapter merged
    onto the base."""
    from transformers import AutoModelForCausalLM

    from forgetlens.models.loading import default_device, load_model

    path = Path(path)
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        base = load_model(base_spec).model
        return PeftModel.from_pretrained(base, str(path)).merge_and_unload().eval()
    return AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).to(default_device()).eval()
