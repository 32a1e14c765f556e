"""forgetlens's own files, read and written without running code or touching what it did not make.

Run folders, model folders and results files may come from anyone, so everything here holds:

- **No code from a file.** forgetlens stores its artefacts as strict JSON and safetensors (tensors plus JSON
  metadata); neither format can carry code, and nothing here unpickles.
- **Strict JSON out.** NaN and infinity are written as ``null`` (strict parsers, ``JSON.parse`` among them,
  reject bare ``NaN``); a file that does not parse is one error naming it.
- **Delete only our own.** A run directory gets a marker file when forgetlens creates it; ``--overwrite``
  deletes a directory only when it holds that marker (or the run record an older forgetlens wrote), and never
  ``/``, the home directory, the current directory or one of its ancestors.
- **One process per run directory.** :func:`claim_run_dir` holds an advisory lock while a run works in it; a
  second process is refused with one line.  The lock goes with the process (a killed run leaves none held).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from forgetlens.errors import ForgetlensError
from forgetlens.utils import apply_umask, atomic_write_text, first_line, short_repr

RUN_MARKER = ".forgetlens-run"
"""File forgetlens writes into every run or study directory it creates: what it is and who made it."""
LOCK_FILE = ".forgetlens.lock"
"""File whose advisory lock (``flock``) a run holds while it works in its directory."""
LEGACY_RECORDS = ("config.json", "study_config.json")
"""Run records that mark a directory made by forgetlens before :data:`RUN_MARKER` existed (they must parse as
forgetlens's own record: a mapping with ``config`` and ``versions.forgetlens``)."""


# --- JSON -------------------------------------------------------------------------------------------------------
def strict_json_value(value: Any) -> Any:
    """``value`` with every float NaN or infinity replaced by None (and tuples as lists), ready for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json_value(v) for v in value]
    return value


def json_text(data: Any, indent: int | None = 1) -> str:
    """Strict JSON text of ``data`` (NaN and infinity as ``null``)."""
    return json.dumps(strict_json_value(data), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 1) -> None:
    """Write ``data`` to ``path`` as strict JSON, atomically."""
    atomic_write_text(path, json_text(data, indent))


MAX_JSON_BYTES = 512 * 2**20
"""Largest JSON record forgetlens reads (its own largest, a study's results.json, is a few MiB)."""


def read_json(path: str | os.PathLike, expect: type | None = dict) -> Any:
    """The JSON value in ``path``; a ForgetlensError naming the file when it is a symbolic link (forgetlens
    never writes one, and reads nothing through one), larger than :data:`MAX_JSON_BYTES`, not UTF-8 JSON or, with
    ``expect``, not of that type.  (Older forgetlens files may hold bare ``NaN``; they are read as NaN.)"""
    path = Path(path)
    if path.is_symlink():
        raise ForgetlensError(f"{path}: a symbolic link, not a file forgetlens wrote; refusing to read through it")
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ForgetlensError(f"{path}: larger than {MAX_JSON_BYTES // 2**20} MiB; not a record forgetlens wrote")
    except OSError as exc:
        raise ForgetlensError(f"{path}: cannot be read ({first_line(exc)})") from None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ForgetlensError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected JSON") from None
    except json.JSONDecodeError as exc:
        raise ForgetlensError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ForgetlensError(f"{path}: JSON nested too deeply to read") from None
    except OSError as exc:  # a directory where the file should be, or a file that vanished
        raise ForgetlensError(f"{path}: cannot be read as a file ({first_line(exc)})") from None
    if expect is not None and not isinstance(data, expect):
        raise ForgetlensError(f"{path}: expected a JSON {expect.__name__}, got {type(data).__name__}")
    return data


def record_field(record: dict, key: str, path: str | os.PathLike, expect: type = dict) -> Any:
    """``record[key]`` of a JSON record read from ``path``, or a ForgetlensError naming the file and field."""
    if key not in record:
        raise ForgetlensError(f"{path}: missing field '{key}'")
    if not isinstance(record[key], expect):
        raise ForgetlensError(f"{path}: field '{key}' should be a {expect.__name__}, got {short_repr(record[key])}")
    return record[key]


# --- tensors ------------------------------------------------------------------------------------------------------
def save_tensors(path: str | os.PathLike, tensors: dict, metadata: dict) -> None:
    """Write ``tensors`` (name -> torch tensor) and JSON-able ``metadata`` to one safetensors file, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(
            {k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"forgetlens": json_text(metadata)}
        )
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_tensors(path: str | os.PathLike) -> tuple[dict, dict]:
    """(tensors, metadata) of a file written by :func:`save_tensors`; a ForgetlensError naming the file when it
    is truncated, not safetensors, or lacks forgetlens's metadata."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            meta = (fh.metadata() or {}).get("forgetlens")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ForgetlensError(f"{path}: not a readable safetensors file ({first_line(exc)})") from None
    if meta is None:
        raise ForgetlensError(f"{path}: no forgetlens metadata; not a file forgetlens wrote")
    try:
        metadata = json.loads(meta)
    except (json.JSONDecodeError, RecursionError):
        raise ForgetlensError(f"{path}: its forgetlens metadata is not valid JSON") from None
    if not isinstance(metadata, dict):
        raise ForgetlensError(f"{path}: its forgetlens metadata should be a JSON object")
    return tensors, metadata


# --- run directories --------------------------------------------------------------------------------------------
def made_by_forgetlens(directory: Path) -> bool:
    """True when ``directory`` holds forgetlens's run marker, or a run record an older forgetlens wrote."""
    if (directory / RUN_MARKER).is_file():
        return True
    for name in LEGACY_RECORDS:
        record = directory / name
        if record.is_file():
            try:
                data = json.loads(record.read_text())
            except (OSError, ValueError, RecursionError):
                continue
            if isinstance(data, dict) and "config" in data and isinstance(data.get("versions"), dict):
                if "forgetlens" in data["versions"]:
                    return True
    return False


def check_deletable(directory: Path, option: str = "--overwrite") -> None:
    """Raise a ForgetlensError unless forgetlens may delete ``directory``: made by forgetlens, not a link, and
    not ``/``, the home directory, the current directory or an ancestor of it."""
    if directory.is_symlink():
        raise ForgetlensError(f"{option}: {directory} is a symbolic link; forgetlens deletes only directories it made")
    resolved = directory.resolve()
    cwd = Path.cwd().resolve()
    if resolved == Path(resolved.anchor) or resolved == Path.home().resolve() or cwd.is_relative_to(resolved):
        raise ForgetlensError(
            f"{option}: refusing to delete {directory} (the file-system root, the home directory, or the current "
            f"directory or one of its parents); choose another --out"
        )
    if not made_by_forgetlens(directory):
        raise ForgetlensError(
            f"{option}: {directory} was not made by forgetlens (no {RUN_MARKER} marker or run record in it); "
            f"delete it yourself or choose another --out"
        )


class RunDirectory:
    """A run or study directory claimed by this process (see :func:`claim_run_dir`); ``release`` frees it."""

    def __init__(self, path: Path, lock_fd: int):
        self.path, self._fd = path, lock_fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _lock(directory: Path) -> int:
    try:  # O_NOFOLLOW: a planted link must not make forgetlens create or open a file elsewhere
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        raise ForgetlensError(
            f"{directory / LOCK_FILE}: cannot be opened as forgetlens's lock file ({first_line(exc)}); a symbolic "
            "link or another file there is not forgetlens's"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ForgetlensError(
            f"{directory}: another forgetlens process is working in this run directory; wait for it to finish"
        ) from None
    return fd


def remove_leftovers(run_dir: Path) -> int:
    """Delete what an interrupted write of forgetlens's left in ``run_dir`` (it holds the directory's lock): the
    temporary files of its atomic writes (``.NAME.*.tmp``) and checkpoints' staging folders
    (``checkpoints/.partial``), never through a link; returns how many were removed."""
    removed = 0
    for folder, dirs, files in os.walk(run_dir, followlinks=False):
        here = Path(folder)
        for name in files:
            path = here / name
            if name.startswith(".") and name.endswith(".tmp") and not path.is_symlink():
                path.unlink()
                removed += 1
        if here.name == "checkpoints" and ".partial" in dirs and not (here / ".partial").is_symlink():
            shutil.rmtree(here / ".partial")
            dirs.remove(".partial")
            removed += 1
    return removed


def claim_run_dir(run_dir: str | os.PathLike, resume: bool, overwrite: bool, kind: str) -> RunDirectory:
    """Make ``run_dir`` ready for a run of ``kind`` (``finetune`` or ``study``) and lock it for this process.

    An existing non-empty directory is refused unless ``resume`` (continue it) or ``overwrite`` (delete it, only
    when :func:`check_deletable` allows).  A directory another process holds is refused either way.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ForgetlensError(f"--out: {run_dir} is a file; expected a directory")
    if run_dir.exists() and any(run_dir.iterdir()):
        if overwrite:
            check_deletable(run_dir)
            if (run_dir / LOCK_FILE).exists():
                os.close(_lock(run_dir))  # refused while another process holds it
            shutil.rmtree(run_dir)
        elif not resume:
            raise ForgetlensError(
                f"run directory {run_dir} already exists; pass --resume to continue it or --overwrite to start again"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = _lock(run_dir)
    remove_leftovers(run_dir)
    if not (run_dir / RUN_MARKER).exists():
        write_json(run_dir / RUN_MARKER, {"made_by": "forgetlens", "kind": kind})
    return RunDirectory(run_dir, fd)
