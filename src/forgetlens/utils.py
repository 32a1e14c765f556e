"""Small helpers shared across stages: atomic writes, progress bars, version records."""

from __future__ import annotations

import csv
import importlib.metadata
import io
import os
import platform
import reprlib
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    import torch


PINNED = ("torch", "transformers", "tokenizers", "trl", "peft", "accelerate", "datasets", "numpy")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def apply_umask(path: str | os.PathLike) -> None:
    """Give a file made by ``tempfile.mkstemp`` (always 0600) the mode a plain ``open`` would give it: 0666 less
    the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 3, 60, 60, 6, 6


def short_repr(value: object) -> str:
    """``repr(value)`` cut to a line's worth (nested containers and long strings abbreviated with ``...``), for
    error messages about values read from files or the command line."""
    return _SHORT.repr(value)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_writable(path: str | os.PathLike, option: str) -> None:
    """Raise a ForgetlensError naming ``option`` unless ``path`` (a file or directory to be written) can be
    created: its nearest existing ancestor must be a writable directory."""
    from forgetlens.errors import ForgetlensError

    path = Path(path).expanduser().absolute()
    if path.exists() and not os.access(path, os.W_OK):
        raise ForgetlensError(f"{option}: {path} is not writable (permissions or a read-only file system)")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ForgetlensError(f"{option}: cannot create {path}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ForgetlensError(
            f"{option}: cannot create {path}: {ancestor} is not writable (permissions or a read-only file system)"
        )


def csv_text(header: list[str], rows: Iterable[list]) -> str:
    """A CSV file's text: the header line, then one line per row (forgetlens's one CSV writer)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def right_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists as one right-padded batch -> (ids [batch, width], mask [batch, width], 1 on real tokens)."""
    import torch

    ids = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def versions() -> dict[str, str]:
    """Python, platform and the versions of the libraries a result depends on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("forgetlens",) + PINNED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def silence_known_warnings() -> None:
    """Hide a transformers 5 deprecation warning that its own internals raise on every model load."""
    import warnings

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def release_freed_memory() -> None:
    """Give the memory of freed objects back to the operating system: collect reference cycles (a trainer's cycles
    hold its optimizer state), then ask glibc to return its free heap pages (``malloc_trim``). glibc keeps what a
    job freed for later allocations, so a worker that trained a model went on holding 2.0-2.5 GiB while it measured
    (``BENCHMARKS.md``, the main job); this leaves what is still in use, 0.5 GiB after a SmolLM2 run. A no-op for
    the heap where the C library is not glibc."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        pass


def world_size() -> int:
    """Processes in this run (``WORLD_SIZE``, set by ``accelerate launch`` / torchrun); 1 for a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in the process that writes shared files and measures (rank 0), and in any single-process run."""
    return int(os.environ.get("RANK", "0")) == 0


def wait_for_everyone() -> None:
    """A barrier across the launched processes (through accelerate); nothing in a single-process run."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def threads_from_env(value: str) -> int:
    """``FORGETLENS_THREADS`` as a positive integer, or a ForgetlensError naming the variable."""
    from forgetlens.errors import ForgetlensError

    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ForgetlensError(
            f"FORGETLENS_THREADS={short_repr(value)}: expected a positive integer number of CPU threads"
        )
    return threads


def check_environment() -> None:
    """Every forgetlens environment variable that holds a number, checked before any work starts."""
    value = os.environ.get("FORGETLENS_THREADS")
    if value:
        threads_from_env(value)
