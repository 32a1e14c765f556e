"""Load a causal LM and its tokenizer, offline by default.

``embedded`` names the small base model that ships with forgetlens; ``smollm2-135m`` and ``qwen2.5-coder-0.5b``
name SmolLM2-135M-Instruct and Qwen2.5-Coder-0.5B-Instruct from their Python packages (``models/packaged.py``).
Anything else is a local directory or a Hugging Face model id already in the local HF cache; nothing is
downloaded unless ``allow_download=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from forgetlens.errors import ForgetlensError
from forgetlens.models.names import EMBEDDED, EMBEDDED_DIR, is_embedded  # noqa: F401  (re-exported)
from forgetlens.models.packaged import PACKAGED, model_provenance, packaged_model_dir
from forgetlens.utils import first_line, threads_from_env

if TYPE_CHECKING:  # annotations only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def resolve_model_path(spec: str | os.PathLike, allow_download: bool | None = None) -> str:
    """Turn ``embedded`` into the shipped directory and a packaged alias (``smollm2-135m``) into its cached
    conversion; check that a local path exists.

    Strings that are not existing paths but look like ``org/name`` are returned unchanged, to be looked up in the
    local HF cache; unless downloads are allowed (``allow_download``, None: :func:`downloads_allowed`) such a name
    must already be cached.
    """
    spec = str(spec)
    if spec == EMBEDDED:
        if not (EMBEDDED_DIR / "config.json").exists():
            raise ForgetlensError(
                f"the embedded base model is missing from {EMBEDDED_DIR}; rebuild it with `forgetlens pretrain-base`"
            )
        return str(EMBEDDED_DIR)
    if spec in PACKAGED:
        return str(packaged_model_dir(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ForgetlensError(f"model path {spec} is a file; expected a model directory with config.json")
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ForgetlensError(f"model path {spec} has no config.json; expected a Hugging Face model directory")
        refuse_custom_code(path, spec)
        return str(path)
    looks_like_hub_id = spec.count("/") == 1 and not spec.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise ForgetlensError(f"model path {spec} does not exist")
    allowed = downloads_allowed() if allow_download is None else allow_download
    if not allowed and not _in_hub_cache(spec):
        raise ForgetlensError(
            f"model {spec} is not a local directory and not in the local Hugging Face cache; give a model "
            f"directory, `embedded` or one of {', '.join(f'`{a}`' for a in PACKAGED)}, or add --allow-download to "
            "fetch it"
        )
    return spec


CODE_KEYS = ("auto_map",)
"""Keys of a model folder's JSON files that ask transformers to import Python code from the folder."""
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
"""Weight files that are pickles (unpickling can run code); forgetlens reads safetensors only."""


def refuse_custom_code(directory: Path, spec: str | os.PathLike) -> None:
    """A ForgetlensError when ``directory``'s config or tokenizer config names Python code of its own
    (``auto_map``): forgetlens never runs code from a model folder, and never asks whether to."""
    import json

    for name in ("config.json", "tokenizer_config.json", "adapter_config.json"):
        file = directory / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_bytes().decode("utf-8"))
        except (ValueError, RecursionError):
            raise ForgetlensError(f"model {spec}: {file} is not valid UTF-8 JSON") from None
        if not isinstance(data, dict):
            raise ForgetlensError(f"model {spec}: {file} should hold a JSON object")
        for key in CODE_KEYS:
            if key in data:
                raise ForgetlensError(
                    f"model {spec}: {file} names custom code ({key!r}); forgetlens runs no code from a model "
                    f"folder (trust_remote_code=False), so only architectures transformers ships are supported"
                )


def downloads_allowed() -> bool:
    """Whether models may be fetched from the Hub: only when the command line said ``--allow-download``."""
    return os.environ.get("FORGETLENS_ALLOW_DOWNLOAD") == "1"


def _in_hub_cache(repo_id: str) -> bool:
    """Whether ``repo_id``'s config.json is in the local HF cache (no network)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


@dataclass(frozen=True)
class ModelInfo:
    """What a model's config says, read without loading its weights."""

    path: str
    model_type: str
    max_positions: int | None
    """Longest sequence its position embeddings cover (None: not stated)."""


def check_model(spec: str | os.PathLike) -> ModelInfo:
    """Everything about ``spec`` that can fail before its weights load: the path or cache entry, a readable
    config, and an architecture whose heads forgetlens can read (one ForgetlensError naming the model)."""
    from transformers import AutoConfig

    from forgetlens.models.heads import supported_model_types

    path = resolve_model_path(spec)
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=not downloads_allowed(), trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ForgetlensError(f"could not read the config of model {spec}: {first_line(exc)}") from None
    model_type = getattr(config, "model_type", "")
    if model_type not in supported_model_types():
        raise ForgetlensError(
            f"model {spec}: unsupported architecture {model_type!r}; forgetlens reads per-head outputs of "
            f"{', '.join(supported_model_types())} causal language models"
        )
    max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return ModelInfo(path=path, model_type=model_type, max_positions=max_positions)


@dataclass
class LoadedModel:
    """A model, its tokenizer and where they came from."""

    model: Any  # a transformers PreTrainedModel
    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    source: str
    """What the user named (``embedded``, ``smollm2-135m``, a directory or a hub id)."""
    provenance: dict | None = None
    """Where a packaged model came from (distribution, file, sha256, quantisation); None for other models."""


def checked_device(requested: str, name: str) -> str:
    """``requested`` if it names a torch device this process can use, else a ForgetlensError naming ``name``
    (the variable or option it came from)."""
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ForgetlensError(f"{name}={requested!r} is not a torch device; expected e.g. cpu, cuda, cuda:1") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ForgetlensError(f"{name}={requested!r} but torch sees no CUDA device")
    return requested


def default_device() -> str:
    """Where forgetlens loads models: ``$FORGETLENS_DEVICE`` if set, else this process's GPU when one is visible
    (``cuda:$LOCAL_RANK`` under accelerate), else ``cpu``."""
    requested = os.environ.get("FORGETLENS_DEVICE")
    if requested:
        return checked_device(requested, "FORGETLENS_DEVICE")
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    return "cpu"


def _tokenizer(spec, path: str, offline: bool):
    from transformers import AutoTokenizer

    if Path(path).is_dir() and not any((Path(path) / f).exists() for f in TOKENIZER_FILES):
        # transformers would otherwise build a default tokenizer from config.json alone, with wrong ids
        raise ForgetlensError(
            f"model directory {spec} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
            f"save the model's tokenizer files beside its config.json"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=offline, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise ForgetlensError(
            f"could not load a tokenizer for {spec} ({first_line(exc)}); save the model's "
            f"tokenizer files (tokenizer.json, tokenizer_config.json) beside its config.json"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(spec: str | os.PathLike) -> PreTrainedTokenizerBase:
    """The tokenizer of ``spec`` alone (no weights), as :func:`load_model` would load it."""
    return _tokenizer(spec, resolve_model_path(spec), not downloads_allowed())


def load_model(
    spec: str | os.PathLike,
    *,
    dtype: torch.dtype | str = torch.float32,
    device: str | None = None,
    allow_download: bool | None = None,
) -> LoadedModel:
    """Load ``spec`` (``embedded``, a directory or a cached HF id) in eval mode, on ``device`` (default:
    :func:`default_device`); ``allow_download`` None follows the command line (:func:`downloads_allowed`)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # forgetlens shows its own progress; keep stderr for errors
    hf_logging.set_verbosity_error()
    if allow_download is None:
        allow_download = downloads_allowed()
    path = resolve_model_path(spec, allow_download)
    offline = not allow_download
    tokenizer = _tokenizer(spec, path, offline)
    model = load_weights(path, spec, offline=offline, dtype=dtype)
    model.to(device or default_device()).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, source=str(spec), provenance=model_provenance(path))


def load_weights(
    path: str | os.PathLike, spec: str | os.PathLike, *, offline: bool = True, dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """``AutoModelForCausalLM`` from ``path``: safetensors weights only, no code from the folder; every failure
    (pickle-only weights, a truncated or foreign file, shapes that do not fit the config) one ForgetlensError
    naming the model."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    folder = Path(path)
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        pickles = sorted(f.name for pattern in PICKLE_WEIGHTS for f in folder.glob(pattern))
        found = f"only pickle weight files ({', '.join(pickles)})" if pickles else "no model.safetensors"
        raise ForgetlensError(
            f"model {spec}: {folder} has {found}; forgetlens loads safetensors weights only (unpickling can run "
            f"code): save the model with save_pretrained(..., safe_serialization=True)"
        )
    try:
        return AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=offline, dtype=dtype, use_safetensors=True, trust_remote_code=False
        )
    except SafetensorError as exc:
        files = ", ".join(sorted(f.name for f in folder.glob("*.safetensors"))) or "its safetensors file"
        raise ForgetlensError(
            f"could not load model {spec}: {folder / files} is truncated or not safetensors ({first_line(exc)})"
        ) from None
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ForgetlensError(f"could not load model {spec}: {first_line(exc)}") from None


def model_record(spec: str | os.PathLike) -> dict:
    """How a result names its model: what the user passed and, for a packaged model, its provenance."""
    record: dict = {"name": str(spec)}
    if str(spec) in PACKAGED or Path(str(spec)).is_dir():
        provenance = model_provenance(resolve_model_path(spec))
        if provenance:
            record["provenance"] = provenance
    return record


def configure_threads(model: torch.nn.Module, threads: int | None = None) -> None:
    """Use one CPU thread for tiny models (much faster on a shared 2-core machine) unless told otherwise."""
    env = os.environ.get("FORGETLENS_THREADS")
    if threads is None and env:
        threads = threads_from_env(env)
    if threads is None:
        n_params = sum(p.numel() for p in model.parameters())
        threads = 1 if n_params < 50_000_000 else torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
