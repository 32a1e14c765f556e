"""Target-task data: SciKnowEval and SciQ loaders, splits, answer extraction and rewards."""

import json
from pathlib import Path

import pytest

from forgetlens.errors import ForgetlensError
from forgetlens.targets import science_qa
from forgetlens.targets.rewards import score_reply
from forgetlens.targets.science_data import (
    load_sciknoweval,
    load_sciq,
    load_target_data,
    split_records,
    synthetic_science_records,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sciknoweval-chemistry-L3"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside the checkout")

RECORD = {
    "type": "mcq-4-choices",
    "question": "What is the chemical symbol of sodium?",
    "choices": {"text": ["K", "Na", "Fe", "Cl"], "label": ["A", "B", "C", "D"]},
    "answerKey": "B",
}


@pytest.mark.parametrize(
    "reply", ["B", " B ", "(B)", "B.", "The answer is B", "answer: B", "Na", "B. Na", "B<|im_end|>"]
)
def test_correct_replies_score_one(reply):
    assert score_reply(reply, RECORD) == 1.0


@pytest.mark.parametrize(
    "reply",
    [
        "A B C D",
        "A, B, C or D",
        "B or C",
        "A",
        "B C",
        "The answer is B or C",
        "K Na Fe Cl",
        "",
        "I think it could be B but maybe A",
        "Bananas",
        "D. Na",
    ],
)
def test_wrong_hedged_or_listing_replies_score_zero(reply):
    assert score_reply(reply, RECORD) == 0.0


def test_strict_mode_accepts_only_a_letter():
    assert score_reply("B", RECORD, strict=True) == 1.0
    assert score_reply("The answer is B", RECORD, strict=True) == 0.0
    assert score_reply("Na", RECORD, strict=True) == 0.0


@needs_shared
def test_sciknoweval_files_load_as_they_are():
    counts = {}
    for path in sorted(SHARED.glob("*.jsonl")):
        records = load_sciknoweval(path)
        counts[path.stem] = len(records)
        for r in records:
            if r["type"] == "mcq-4-choices":
                assert r["answerKey"] in r["choices"]["label"]
                gold = r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])]
                assert score_reply(r["answerKey"], r) == 1.0
                assert score_reply(gold, r) == 1.0 or sum(t == gold for t in r["choices"]["text"]) > 1
                assert score_reply("A B C D", r) == 0.0
            else:
                assert score_reply(r["answer"], r) == 1.0
                assert score_reply(r["answer"] + " + H2O", r) == 0.0
    assert counts == {
        "balancing_chemical_equation": 300,
        "molar_weight_calculation": 600,
        "molecular_property_calculation": 500,
        "molecule_structure_prediction": 300,
    }
    assert len(load_target_data(SHARED)) == 1700


@needs_shared
def test_sciknoweval_renders_with_the_instruction():
    record = load_sciknoweval(SHARED / "molar_weight_calculation.jsonl")[0]
    text = science_qa.mcq_user_text(record)
    assert text.startswith(record["prompt"]["default"])
    assert "\nA. " in text and "\nD. " in text


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "lines,message",
    [
        (['{"type": "mcq-4-choices", "question": "q"'], r"bad\.jsonl:1: malformed JSON line"),
        (
            ['{"type": "mcq-4-choices", "question": "q", "choices": {"text": ["a"], "label": ["A"]}}'],
            r"bad\.jsonl:1: missing field 'answerKey'",
        ),
        (
            [
                '{"type": "mcq-4-choices", "question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, '
                '"answerKey": "E"}'
            ],
            r"bad\.jsonl:1: answerKey 'E' is not among the labels",
        ),
        ([json.dumps(RECORD), '{"question": "q"}'], r"bad\.jsonl:2: missing field 'type'"),
        ([""], r"bad\.jsonl: the dataset is empty"),
    ],
)
def test_bad_sciknoweval_input_names_file_line_and_field(tmp_path, lines, message):
    with pytest.raises(ForgetlensError, match=message):
        load_sciknoweval(write(tmp_path, "bad.jsonl", lines))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ForgetlensError, match="nothere.jsonl does not exist"):
        load_target_data(tmp_path / "nothere.jsonl")


def test_sciq_becomes_shuffled_four_choice_questions(tmp_path):
    rows = [
        {
            "question": f"q{i}",
            "correct_answer": f"right{i}",
            "distractor1": "x",
            "distractor2": "y",
            "distractor3": "z",
            "support": "A support line." if i % 2 else "",
        }
        for i in range(40)
    ]
    path = write(tmp_path, "sciq.jsonl", [json.dumps(r) for r in rows])
    records = load_target_data(path, seed=1)
    assert len(records) == 40
    assert {r["answerKey"] for r in records} == {"A", "B", "C", "D"}
    for r, row in zip(records, rows):
        assert r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])] == row["correct_answer"]
        assert r["question"].endswith(row["question"])
    assert records == load_sciq(path, seed=1) and records != load_sciq(path, seed=2)
    with pytest.raises(ForgetlensError, match=r"sciq_bad.jsonl:1: missing field 'distractor3'"):
        load_sciq(
            write(tmp_path, "sciq_bad.jsonl", [json.dumps({k: v for k, v in rows[0].items() if k != "distractor3"})])
        )


def test_splits_are_disjoint_and_seeded():
    records = synthetic_science_records(seed=0)
    train, evaluation = split_records(records, 0.3, seed=0)
    assert not {r["question"] for r in train} & {r["question"] for r in evaluation}
    assert len(train) + len(evaluation) == len(records)
    assert split_records(records, 0.3, seed=0) == (train, evaluation)
    assert split_records(records, 0.3, seed=1) != (train, evaluation)
