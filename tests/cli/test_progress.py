"""Progress display: one line per finished piece of work in a log, nothing when quiet, workers' work shown by
the parent; and the report's numbers written to the digits their intervals support."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from forgetlens import progress
from forgetlens.report.text import interval_text, number_text, p_text


def _work_in_a_worker(n: int) -> int:
    return sum(progress.track(range(n), f"worker job of {n}", "items"))


def test_a_log_gets_one_line_per_finished_piece_of_work(monkeypatch, capsys):
    monkeypatch.delenv("FORGETLENS_QUIET", raising=False)
    assert progress.default_mode() == "lines"  # pytest's stderr is not a terminal
    assert list(progress.track(["a", "b", "c"], "tokenise", "prompts")) == ["a", "b", "c"]
    with progress.open_task("train sft-s0", 4, "steps", initial=1) as task:  # resumed at step 1
        for _ in range(3):
            task.advance()
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("tokenise: 3/3 prompts in ") and err[1].startswith("train sft-s0: 4/4 steps in ")
    assert len(err) == 2  # nothing while the work runs


def test_quiet_shows_nothing(monkeypatch, capsys):
    monkeypatch.setenv("FORGETLENS_QUIET", "1")
    assert list(progress.track(range(3), "work")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_work_in_worker_processes_is_shown_by_the_parent(monkeypatch, capfd):
    monkeypatch.delenv("FORGETLENS_QUIET", raising=False)
    context = multiprocessing.get_context("spawn")
    with (
        progress.relay(context) as events,
        ProcessPoolExecutor(2, mp_context=context, initializer=progress.send_to, initargs=(events,)) as pool,
    ):
        assert list(pool.map(_work_in_a_worker, [3, 5])) == [3, 10]
    err = capfd.readouterr().err
    assert "worker job of 3: 3/3 items in" in err and "worker job of 5: 5/5 items in" in err


@pytest.mark.parametrize(
    "stat, text",
    [
        ({"value": -3.39e-4, "ci_low": -5.146e-4, "ci_high": -1.97e-4}, "-0.00034 [-0.00051, -0.00020]"),
        ({"value": 0.625, "ci_low": 0.5, "ci_high": 0.75}, "0.62 [0.50, 0.75]"),
        ({"value": -0.41444, "ci_low": -0.5386, "ci_high": -0.2926}, "-0.41 [-0.54, -0.29]"),
        ({"value": 79.66, "ci_low": 70.1, "ci_high": 88.2}, "80 [70, 88]"),
        ({"value": 0.26388, "ci_low": None, "ci_high": None}, "0.264"),  # one seed: the value, 3 digits
        ({"value": 0.26388, "ci_low": float("nan"), "ci_high": float("nan")}, "0.264"),
        ({"value": -1e-9, "ci_low": -2e-9, "ci_high": 0.0}, "-1.0e-09 [-2.0e-09, 0.0e+00]"),
        ({"value": None, "ci_low": None, "ci_high": None}, "n/a"),
        ({"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}, "exactly 0"),  # once "0.00 [0.00, 0.00]"
    ],
)
def test_intervals_are_written_to_the_digits_their_width_supports(stat, text):
    assert interval_text(stat) == text


def test_prose_has_no_exponent():
    assert interval_text({"value": -1e-9, "ci_low": -2e-9, "ci_high": 0.0}, prose=True) == "0 (below 0.000001)"
    tiny = {"value": -3.8e-5, "ci_low": -7.9e-5, "ci_high": -1.3e-5}
    assert interval_text(tiny, prose=True) == "-0.000038 [-0.000079, -0.000013]"


def test_numbers_alone_keep_three_significant_digits_and_never_a_signed_zero():
    numbers = (0.83333, 40.4, 1234.5, -0.000339, 0.0)
    assert [number_text(x) for x in numbers] == ["0.833", "40.4", "1234", "-0.000339", "0.00"]
    assert interval_text({"value": -0.0001, "ci_low": -0.2, "ci_high": 0.3}) == "0.00 [-0.20, 0.30]"  # not -0.00
    assert [p_text(p) for p in (0.0005, 0.0312, 0.3, None)] == ["0.0005", "0.031", "0.3", "n/a"]
