import random

import pytest
from tokenizers import Tokenizer

from forgetlens.embedded_build.corpus import SOURCES
from forgetlens.errors import ForgetlensError
from forgetlens.models.loading import EMBEDDED_DIR
from forgetlens.targets import science_qa
from forgetlens.tasks import TaskExample, encode_examples, get_task, task_names


def test_the_four_prior_tasks_exist():
    assert {"induction", "ioi", "greater_than", "fact_recall"} <= set(task_names())


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ForgetlensError, match="unknown task 'nope'.*known tasks: induction"):
        get_task("nope")


@pytest.mark.parametrize("name", ["induction", "ioi", "greater_than", "fact_recall", "greater_than_year"])
def test_examples_are_reproducible_and_seed_dependent(name):
    task = get_task(name)
    assert task.examples(20, seed=3) == task.examples(20, seed=3)
    assert task.examples(20, seed=3) != task.examples(20, seed=4)


@pytest.mark.parametrize("name", ["induction", "ioi", "greater_than", "fact_recall", "greater_than_year"])
def test_examples_render_for_embedded_tokenizer(tokenizer, name):
    examples = get_task(name).examples(50, seed=0)
    batch = encode_examples(tokenizer, examples, name)
    assert batch.clean_ids.shape == batch.corrupted_ids.shape
    assert (batch.answer_ids != batch.distractor_ids).all()
    for i, ex in enumerate(examples):
        n = int(batch.answer_pos[i]) + 1
        assert tokenizer.decode(batch.clean_ids[i, :n]) == ex.clean
        assert tokenizer.decode(batch.corrupted_ids[i, :n]) == ex.corrupted
        # clean and corrupted differ somewhere, and the answer is the clean prompt's continuation
        assert (batch.clean_ids[i, :n] != batch.corrupted_ids[i, :n]).any()
        assert tokenizer.decode([int(batch.answer_ids[i])]) == ex.answer


def test_multi_token_answer_is_rejected(tokenizer):
    ex = TaskExample(
        clean="The capital of France is", corrupted="The capital of Italy is", answer=" Parisxyzzyq", distractor=" Rome"
    )
    with pytest.raises(ForgetlensError, match=r"answer ' Parisxyzzyq' is \d+ tokens"):
        encode_examples(tokenizer, [ex], "fact_recall")


def test_length_mismatch_is_rejected(tokenizer):
    ex = TaskExample(
        clean="The capital of France is",
        corrupted="The capital of the United Kingdom is",
        answer=" Paris",
        distractor=" London",
    )
    with pytest.raises(ForgetlensError, match="example 0: clean prompt is 5 tokens but corrupted is"):
        encode_examples(tokenizer, [ex], "fact_recall")


def test_autotokenizer_gives_the_trained_ids(tokenizer):
    raw = Tokenizer.from_file(str(EMBEDDED_DIR / "tokenizer.json"))
    rng = random.Random(0)
    for source in SOURCES.values():
        for _ in range(20):
            doc = source(rng)
            assert tokenizer(doc, add_special_tokens=False)["input_ids"] == raw.encode(doc).ids
            assert tokenizer.decode(raw.encode(doc).ids) == doc


def test_chat_template_matches_the_pretraining_format(tokenizer):
    record = science_qa.mcq_record("symbol", "sodium", "Na", random.Random(0))
    user = science_qa.mcq_user_text(record)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == science_qa.chat_text(user)
    assert record["choices"]["text"][science_qa.LETTERS.index(record["answerKey"])] == "Na"


def test_year_task_answers_exceed_and_distractors_precede_the_start_year():
    from forgetlens.tasks.registry import default_task_names

    assert "greater_than_year" not in default_task_names()  # the embedded model never learnt it
    assert "greater_than_year" in default_task_names("smollm2-135m")
    for ex in get_task("greater_than_year").examples(200, seed=3):
        start = ex.clean.split("from the year ")[1].split()[0]  # e.g. "1732"
        assert int(ex.distractor) < int(start[2]) < int(ex.answer)
        assert ex.corrupted.split("from the year ")[1].split()[0] == start[:2] + "01"


def test_comparison_halves_split_every_pair_once_and_questions_are_answered_right():
    from forgetlens.targets import comparisons

    pretrain, target = comparisons.halves()
    assert len(pretrain) + len(target) == 4 * 210 and not set(pretrain) & set(target)
    records = comparisons.target_records()
    assert len(records) == len(target) and records == comparisons.target_records()
    for record, (quantity, unit, digits) in zip(records, target):
        values = [
            int(v)
            for v in record["question"].split(" of ", 1)[1].split(f" {unit}.")[0].replace(" and ", ", ").split(", ")
        ]
        assert sorted(values) == list(digits) and quantity in record["question"]
        want = max(values) if "largest" in record["question"] else min(values)
        key = record["choices"]["text"][science_qa.LETTERS.index(record["answerKey"])]
        assert key == f"{want} {unit}" and sorted(record["choices"]["text"]) == sorted(f"{v} {unit}" for v in values)


def test_pretraining_comparisons_never_ask_a_target_digit_set():
    from forgetlens.targets import comparisons

    target = {(q, d) for q, _, d in comparisons.halves()[1]}
    rng = random.Random(0)
    for _ in range(300):
        question = comparisons.pretraining_document(rng).split("\n")[2]  # "Four samples have a mass of ..."
        quantity = question.split("have a ")[1].split(" of ")[0]
        values = question.split(" of ", 1)[1].split(".")[0].rsplit(" ", 1)[0].replace(" and ", ", ").split(", ")
        assert (quantity, tuple(sorted(int(v) for v in values))) not in target


def test_induction_repeats_from_a_later_word_so_the_earliest_unrepeated_word_is_never_the_answer():
    """The shortcut "the word after the repeat's length from the start" (what copying-from-the-start allows)
    never gives the answer; finding the last word earlier and copying its successor always does."""
    for ex in get_task("induction").examples(500, seed=1):
        seq, repeat = ex.clean.removeprefix("copy: ").split(" | ")
        seq, repeat = seq.split(), repeat.split()
        assert seq.index(repeat[0]) >= 1  # the repeat never starts at the first word
        shortcut = seq[len(repeat)]
        assert " " + shortcut != ex.answer
        assert " " + seq[seq.index(repeat[-1]) + 1] == ex.answer
        assert ex.distractor.strip() not in seq


def test_copying_keeps_the_old_induction_prompts_and_repeats_from_the_start():
    for ex in get_task("copying").examples(200, seed=1):
        seq, repeat = ex.clean.removeprefix("copy: ").split(" | ")
        assert seq.split()[: len(repeat.split())] == repeat.split()


def test_set_scored_metric_is_the_probability_mass_difference(tokenizer):
    import torch

    from forgetlens.tasks.base import task_metric

    examples = get_task("greater_than_year").examples(8, seed=0)
    batch = encode_examples(tokenizer, examples, "greater_than_year")
    logits = torch.randn(len(examples), len(tokenizer))
    probs = logits.softmax(-1)
    for kind in ("prob_diff", "logit_diff"):
        got = task_metric(logits, batch, kind)
        for i, ex in enumerate(examples):
            values = probs[i] if kind == "prob_diff" else logits[i]
            valid = [values[tokenizer.convert_tokens_to_ids(d)] for d in ex.valid]
            invalid = [values[tokenizer.convert_tokens_to_ids(d)] for d in ex.invalid]
            if kind == "prob_diff":
                want = sum(valid) - sum(invalid)
            else:
                want = sum(valid) / len(valid) - sum(invalid) / len(invalid)
            assert abs(float(got[i]) - float(want)) < 1e-5
