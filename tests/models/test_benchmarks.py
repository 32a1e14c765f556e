"""Standard benchmarks through lm-eval: local data only, one-line warnings for what cannot run."""

import json
import sys
import warnings

import pytest
import torch
from helpers import LOCAL_TASKS, local_task_dir

from forgetlens.config.options import BenchmarkConfig
from forgetlens.measure.benchmarks import BenchmarkWarning, run_benchmarks


def test_missing_lm_eval_is_one_warning_and_no_scores(monkeypatch, embedded):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    with pytest.warns(BenchmarkWarning, match=r"lm-eval is not installed; `pip install lm-eval`") as record:
        assert run_benchmarks(embedded.model, embedded.tokenizer, BenchmarkConfig(tasks=["mmlu"])) == {}
    assert len(record) == 1 and "\n" not in str(record[0].message)


@pytest.mark.slow
def test_local_task_matches_a_manual_loglikelihood_and_hub_tasks_are_skipped(tmp_path, embedded):
    pytest.importorskip("lm_eval")
    cfg = BenchmarkConfig(tasks=["capitals_local", "hellaswag"], include_path=str(local_task_dir(tmp_path)))
    with pytest.warns(BenchmarkWarning, match=r"benchmark 'hellaswag' skipped .*local") as record:
        scores = run_benchmarks(embedded.model, embedded.tokenizer, cfg)
    assert [str(r.message).count("\n") for r in record] == [0]
    assert set(scores) == {"capitals_local"} and scores["capitals_local"]["n"] == 6

    tok, model = embedded.tokenizer, embedded.model
    correct = []
    for line in (LOCAL_TASKS / "capitals_local.jsonl").read_text().splitlines():
        row = json.loads(line)
        context = tok(f"The capital of {row['country']} is", add_special_tokens=False)["input_ids"]
        lls = []
        for choice in row["choices"]:
            cont = tok(" " + choice, add_special_tokens=False)["input_ids"]  # lm-eval's target_delimiter
            ids = torch.tensor([context + cont])
            with torch.no_grad():
                logp = model(input_ids=ids).logits[0].log_softmax(-1)
            lls.append(sum(logp[len(context) - 1 + i, t].item() for i, t in enumerate(cont)))
        correct.append(max(range(len(lls)), key=lls.__getitem__) == row["label"])
    assert scores["capitals_local"]["score"] == pytest.approx(sum(correct) / len(correct))


def test_no_benchmarks_requested_runs_nothing(embedded):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run_benchmarks(embedded.model, embedded.tokenizer, BenchmarkConfig()) == {}
