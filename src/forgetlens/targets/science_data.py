"""Target-task datasets: SciKnowEval JSONL, SciQ JSON/JSONL, and the synthetic generator, as one record format.

Every loader returns records in the SciKnowEval layout (see ``science_qa.py``)
and raises a :class:`ForgetlensError` naming the file, line and field on bad
input.  Splits are by seed and disjoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from forgetlens.errors import ForgetlensError
from forgetlens.targets import science_qa
from forgetlens.utils import short_repr

MCQ, FILLING = "mcq-4-choices", "filling"


def _read_json_records(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) pairs from a JSONL file, or from a JSON file holding a list."""
    if not path.exists():
        raise ForgetlensError(f"dataset file {path} does not exist")
    if path.is_dir():
        raise ForgetlensError(f"dataset path {path} is a directory; expected a .json or .jsonl file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ForgetlensError(
            f"{path}:{bad_line}: not UTF-8 text ({exc.reason}); expected a UTF-8 JSON/JSONL file"
        ) from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ForgetlensError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise ForgetlensError(f"{path}: JSON nested too deeply to read") from None
        if not isinstance(data, list):
            raise ForgetlensError(f"{path}: expected a JSON list of records")
        for i, obj in enumerate(data, 1):
            if not isinstance(obj, dict):
                raise ForgetlensError(f"{path}: record {i} should be a JSON object, got {type(obj).__name__}")
        return list(enumerate(data, 1))
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ForgetlensError(f"{path}:{lineno}: malformed JSON line ({exc.msg})") from None
        except RecursionError:
            raise ForgetlensError(f"{path}:{lineno}: JSON nested too deeply to read") from None
        if not isinstance(obj, dict):
            raise ForgetlensError(f"{path}:{lineno}: expected a JSON object")
        out.append((lineno, obj))
    return out


MAX_FIELD_CHARS = 20_000
"""Longest question, option or answer accepted, in characters: far beyond any model's context, short enough
that a malformed record fails here rather than exhausting memory while it is tokenized."""


def _text(obj: dict, name: str, where: str, allow_empty: bool = False) -> str:
    """``obj``'s field ``name`` (dotted for nested objects) as a string within :data:`MAX_FIELD_CHARS`, non-empty
    unless ``allow_empty``; a ForgetlensError naming the record and field otherwise."""
    return _checked_text(_field(obj, name, where, object), name, where, allow_empty)


def _optional_text(obj: dict, name: str, where: str) -> str | None:
    """Like :func:`_text` for a field that may be absent, null or empty (None when absent or null)."""
    value = _optional(obj, name, where)
    return None if value is None else _checked_text(value, name, where, allow_empty=True)


def _checked_text(value, name: str, where: str, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise ForgetlensError(f"{where}: field '{name}' should be a string, got {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise ForgetlensError(
            f"{where}: field '{name}' is {len(value):,} characters; at most {MAX_FIELD_CHARS:,} are accepted"
        )
    if not allow_empty and not value.strip():
        raise ForgetlensError(f"{where}: field '{name}' is empty")
    return value


def _optional(obj: dict, name: str, where: str):
    """A dotted field that may be absent (or null); a parent that is not an object is an error."""
    value: object = obj
    parts = name.split(".")
    for i, part in enumerate(parts):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ForgetlensError(
                f"{where}: field '{'.'.join(parts[:i])}' should be an object, got {type(value).__name__}"
            )
        value = value.get(part)
    return value


def _field(obj: dict, name: str, where: str, kind: type = str):
    value = obj
    parts = name.split(".")
    for i, part in enumerate(parts):
        if not isinstance(value, dict):
            raise ForgetlensError(
                f"{where}: field '{'.'.join(parts[:i])}' should be an object, got {type(value).__name__}"
            )
        if part not in value:
            raise ForgetlensError(f"{where}: missing field '{name}'")
        value = value[part]
    if not isinstance(value, kind):
        raise ForgetlensError(f"{where}: field '{name}' should be {kind.__name__}, got {type(value).__name__}")
    return value


def _strings(obj: dict, name: str, where: str) -> list[str]:
    """A list field whose every item is a non-empty string."""
    values = _field(obj, name, where, list)
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            raise ForgetlensError(f"{where}: field '{name}[{i}]' should be a non-empty string, got {short_repr(v)}")
        if len(v) > MAX_FIELD_CHARS:
            raise ForgetlensError(
                f"{where}: field '{name}[{i}]' is {len(v):,} characters; at most {MAX_FIELD_CHARS:,} are accepted"
            )
    return values


def _check_common(obj: dict, where: str) -> None:
    """What every record must satisfy: a non-empty question; an optional instruction ``prompt.default``."""
    _text(obj, "question", where)
    _optional_text(obj, "prompt.default", where)


def _check_options(texts: list[str], labels: list[str], key: str | None, where: str) -> None:
    """Four options, each label once and each text once, and the key among the labels."""
    if len(texts) != len(labels) or not texts:
        raise ForgetlensError(f"{where}: 'choices.text' and 'choices.label' must be non-empty and equally long")
    for name, values in (("choices.label", labels), ("choices.text", texts)):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ForgetlensError(f"{where}: field '{name}' repeats {short_repr(repeated[0])}; options must differ")
    if key is not None and key not in labels:
        raise ForgetlensError(f"{where}: answerKey {short_repr(key)} is not among the labels {short_repr(labels)}")
    if len(texts) != 4:
        raise ForgetlensError(f"{where}: type '{MCQ}' needs 4 choices, got {len(texts)}")


def load_sciknoweval(path: str | Path) -> list[dict]:
    """Read a SciKnowEval JSONL file as it is; check each record's fields by type before any is used."""
    path = Path(path)
    records = []
    for lineno, obj in _read_json_records(path):
        where = f"{path}:{lineno}"
        kind = _field(obj, "type", where)
        _check_common(obj, where)
        if kind == MCQ:
            texts, labels = _strings(obj, "choices.text", where), _strings(obj, "choices.label", where)
            _check_options(texts, labels, _text(obj, "answerKey", where), where)
        elif kind == FILLING:
            _text(obj, "answer", where)
        else:
            raise ForgetlensError(f"{where}: field 'type' is {short_repr(kind)}; expected '{MCQ}' or '{FILLING}'")
        records.append({**obj, "_where": where})
    if not records:
        raise ForgetlensError(f"{path}: the dataset is empty")
    return records


def load_sciq(path: str | Path, seed: int = 0) -> list[dict]:
    """Read SciQ-style records (question, correct_answer, distractor1..3, optional support) as 4-choice MCQs.

    Option order is shuffled by ``seed``; a support passage, when present, is prepended to the question.
    """
    path = Path(path)
    rng = random.Random(f"sciq:{seed}")
    records = []
    for lineno, obj in _read_json_records(path):
        where = f"{path}:{lineno}"
        question = _text(obj, "question", where)
        correct = _text(obj, "correct_answer", where)
        options = [correct] + [_text(obj, f"distractor{i}", where) for i in (1, 2, 3)]
        _check_options(options, list(science_qa.LETTERS), None, where)
        rng.shuffle(options)
        support = _optional_text(obj, "support", where) or ""
        question = f"{support.strip()}\n{question}".strip() if support else question
        records.append({**science_qa.options_record(question, options, correct, source=str(path)), "_where": where})
    if not records:
        raise ForgetlensError(f"{path}: the dataset is empty")
    return records


def load_target_data(path: str | Path, seed: int = 0) -> list[dict]:
    """SciKnowEval or SciQ records from a file, or every ``*.jsonl`` in a directory; format detected per record."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl")) + sorted(path.glob("*.json"))
        if not files:
            raise ForgetlensError(f"dataset directory {path} holds no .json or .jsonl files")
        return [r for f in files for r in load_target_data(f, seed)]
    first = _read_json_records(path)[:1]
    if first and "correct_answer" in first[0][1]:
        return load_sciq(path, seed)
    return load_sciknoweval(path)


def synthetic_science_records(seed: int = 0, variants_per_question: int = 1) -> list[dict]:
    """``variants_per_question`` 4-choice questions per fact of the built-in table (options drawn by ``seed``)."""
    rng = random.Random(f"synthetic-science:{seed}")
    return [
        science_qa.mcq_record(rel, s, o, rng)
        for rel, s, o in science_qa.science_facts()
        for _ in range(variants_per_question)
    ]


def split_records(
    records: list[dict], eval_fraction: float, seed: int, source: str = "the dataset"
) -> tuple[list[dict], list[dict]]:
    """Shuffle by ``seed`` and split into (train, eval); no question text appears in both (``source`` names the
    data in errors)."""
    if not 0 < eval_fraction < 1:
        raise ForgetlensError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    questions = sorted({r["question"] for r in records})
    random.Random(f"split:{seed}").shuffle(questions)
    n_eval = max(1, round(len(questions) * eval_fraction))
    eval_questions = set(questions[:n_eval])
    train = [r for r in records if r["question"] not in eval_questions]
    evaluation = [r for r in records if r["question"] in eval_questions]
    if not train:
        raise ForgetlensError(
            f"{source}: {len(questions)} distinct question(s) is too few to leave any for training after the "
            f"evaluation split (eval_fraction {eval_fraction})"
        )
    return train, evaluation
