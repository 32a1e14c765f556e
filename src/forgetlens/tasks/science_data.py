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
from forgetlens.tasks import science_qa

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
        if not isinstance(data, list):
            raise ForgetlensError(f"{path}: expected a JSON list of records")
        return list(enumerate(data, 1))
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ForgetlensError(f"{path}:{lineno}: malformed JSON line ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ForgetlensError(f"{path}:{lineno}: expected a JSON object")
        out.append((lineno, obj))
    return out


MAX_FIELD_CHARS = 20_000
"""Longest question, option or answer accepted, in characters: far beyond any model's context, short enough
that a malformed record fails here rather than exhausting memory while it is tokenized."""


def _check_lengths(obj: dict, where: str) -> None:
    texts = [("question", obj.get("question")), ("answer", obj.get("answer")), ("support", obj.get("support"))]
    texts += [(f"choices.text[{i}]", t) for i, t in enumerate((obj.get("choices") or {}).get("text") or [])]
    for name, text in texts:
        if isinstance(text, str) and len(text) > MAX_FIELD_CHARS:
            raise ForgetlensError(
                f"{where}: field '{name}' is {len(text):,} characters; at most {MAX_FIELD_CHARS:,} are accepted"
            )


def _field(obj: dict, name: str, where: str, kind=str):
    value = obj
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ForgetlensError(f"{where}: missing field '{name}'")
        value = value[part]
    if not isinstance(value, kind):
        raise ForgetlensError(f"{where}: field '{name}' should be {kind.__name__}, got {type(value).__name__}")
    return value


def load_sciknoweval(path: str | Path) -> list[dict]:
    """Read a SciKnowEval JSONL file as it is; check each record's fields."""
    path = Path(path)
    records = []
    for lineno, obj in _read_json_records(path):
        where = f"{path}:{lineno}"
        _check_lengths(obj, where)
        kind = _field(obj, "type", where)
        _field(obj, "question", where)
        if kind == MCQ:
            texts = _field(obj, "choices.text", where, list)
            labels = _field(obj, "choices.label", where, list)
            key = _field(obj, "answerKey", where)
            if len(texts) != len(labels) or not texts:
                raise ForgetlensError(f"{where}: 'choices.text' and 'choices.label' must be non-empty and equally long")
            if key not in labels:
                raise ForgetlensError(f"{where}: answerKey {key!r} is not among the labels {labels}")
            if len(texts) != 4:
                raise ForgetlensError(f"{where}: type '{MCQ}' needs 4 choices, got {len(texts)}")
        elif kind == FILLING:
            if not _field(obj, "answer", where).strip():
                raise ForgetlensError(f"{where}: field 'answer' is empty in a filling record")
        else:
            raise ForgetlensError(f"{where}: field 'type' is {kind!r}; expected '{MCQ}' or '{FILLING}'")
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
        _check_lengths(obj, where)
        question = _field(obj, "question", where)
        correct = _field(obj, "correct_answer", where)
        options = [correct] + [_field(obj, f"distractor{i}", where) for i in (1, 2, 3)]
        rng.shuffle(options)
        support = obj.get("support") or ""
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
