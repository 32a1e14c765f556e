"""The main job's report as a reader gets it, rebuilt from its committed results.json
(``docs/results/smollm2-135m/quick-results.json.gz``, the job `forgetlens run` runs): the trade-off first, each
number of the summary named for what it is and equal to what its name says when recomputed from the raw
checkpoints, one DCV sign convention (positive = SFT damages more) in every form, no "-0", "nan" or exponent
reaching the page, and legends that describe the bars and lines they sit beside.  ``forgetlens report --markdown``
on the same results: the same number format, comparisons named in full, interpolations marked."""

from __future__ import annotations

import gzip
import html
import json
import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from helpers import run_cli  # noqa: E402

from forgetlens.analysis.summary import CLAIM_HELD, CLAIM_REVERSED, runs_by_method  # noqa: E402
from forgetlens.report import figures  # noqa: E402
from forgetlens.report.html import render  # noqa: E402
from forgetlens.report.text import interval_text, number_text  # noqa: E402

MAIN_JOB = Path(__file__).parents[2] / "docs" / "results" / "smollm2-135m" / "quick-results.json.gz"
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(gzip.open(MAIN_JOB).read())


@pytest.fixture(scope="module")
def page(results) -> str:
    return render(results)


def visible_text(page: str) -> str:
    """What a reader can read: no style block, no inlined image data, no tags."""
    text = re.sub(r"<style.*?</style>|<script.*?</script>|<img[^>]*>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


def signed_zeros(text: str) -> list[str]:
    """Every number written with a minus sign that is zero at the digits shown (``-0``, ``-0.000``, ``-0.0e+00``)."""
    return [n for n in re.findall(rf"(?<![\w.]){NUMBER}", text) if n.startswith("-") and float(n) == 0]


def test_the_trade_off_comes_first(page):
    first = re.search(r"<img[^>]*>", page).group(0)
    assert 'id="tradeoff"' in first
    assert page.index(first) < page.index('id="summary"') < page.index('id="target_accuracy"')


def test_no_signed_zero_nan_or_exponent_reaches_the_page(page):
    text = visible_text(page)
    assert signed_zeros(text) == []
    assert not re.search(r"\b(nan|inf)\b", text, flags=re.I), re.search(r".{60}\b(nan|inf)\b.{20}", text, flags=re.I)
    prose = re.findall(r'<div id="summary">.*?</div>|<pre class="anatomy">.*?</pre>', page, flags=re.S)
    assert len(prose) == 1 + 4  # the summary and one paragraph per (task, run) of the anatomy
    for paragraph in map(visible_text, prose):
        assert not re.search(r"\d[eE][-+]?\d", paragraph), paragraph  # no exponent in prose
    assert signed_zeros("x -0.000 [-0.001, -0.000] and -0 but -0.25") == ["-0.000", "-0.000", "-0"]  # the check sees


def _checkpoint(run: dict, step: int) -> dict:
    return next(c for c in run["checkpoints"] if c["step"] == step)


def _one(pattern: str, text: str) -> re.Match:
    found = list(re.finditer(pattern, text))
    assert len(found) == 1, (pattern, len(found))
    return found[0]


def _close(shown: str, value: float) -> bool:
    """Whether ``shown`` is ``value`` at the digits ``shown`` has."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(float(shown) - value) <= 0.5 * 10**-decimals + 1e-12


def test_each_number_in_the_summary_is_what_its_label_says(results, page):
    """Recomputed from the checkpoints' raw accuracies and V(C0), not read from ``claims``: the accuracy lost is in
    accuracy points (the report once printed 1 - retention under that name), DCV is V_SFT - V_RL."""
    summary = visible_text(re.search(r'<div id="summary">.*?</div>', page, flags=re.S).group(0))
    runs = runs_by_method(results)
    for t, claim in results["claims"]["circuits"].items():
        step = claim["step"]
        lost = {}
        for method in ("sft", "rl"):
            per_seed = []
            for name in runs[method]:
                run = results["runs"][name]
                start, end = run["checkpoints"][0]["prior"][t], _checkpoint(run, step)["prior"][t]
                per_seed.append(start["accuracy"] - end["accuracy"])
            lost[method] = sum(per_seed) / len(per_seed)
        label = rf"Top-1 accuracy lost on {t} \(accuracy points, base minus step {step}\), SFT minus RL"
        m = _one(rf"{label}: ({NUMBER})", summary)
        assert _close(m.group(1), lost["sft"] - lost["rl"]), (t, m.group(1), lost)
        v = {
            method: [results["tasks"][t]["models"][f"{n}@{step}"]["v_circuit"]["value"] for n in runs[method]]
            for method in ("sft", "rl")
        }
        dcv = sum(v["sft"]) / len(v["sft"]) - sum(v["rl"]) / len(v["rl"])
        m = _one(rf"on {t} at step {step}, SFT damages .*? = V_SFT\(C0\) - V_RL\(C0\) = ({NUMBER}) \[", summary)
        assert _close(m.group(1), dcv), (t, m.group(1), dcv)
    for method, names in runs.items():
        step = results["target_gain"][method]["step"]
        acc = [_checkpoint(results["runs"][n], step)["target_accuracy"] for n in names]
        start = [results["runs"][n]["checkpoints"][0]["target_accuracy"] for n in names]
        gain = sum(acc) / len(acc) - sum(start) / len(start)
        m = _one(rf"{method.upper()}'s held-out target gain at step \d+ is ({NUMBER})", summary)
        assert _close(m.group(1), gain), (method, m.group(1), gain)


def test_one_dcv_convention_positive_means_sft_damages_more(results, page):
    """In results.json every DCV form is SFT's damage minus RL's (V as SFT - RL, retention as RL - SFT); every
    verdict agrees with its sign; the page and the markdown say the convention."""
    for task in results["tasks"].values():
        for pair, d in task["dcv"].items():
            sft, rl = task["models"][f"sft{pair}"], task["models"][f"rl{pair}"]
            assert d["v_circuit"]["value"] == pytest.approx(sft["v_circuit"]["value"] - rl["v_circuit"]["value"])
            assert d["retention"]["value"] == pytest.approx(rl["retention"]["value"] - sft["retention"]["value"])
    for claim in results["claims"]["circuits"].values():
        stats = [(claim["dcv_circuit"], claim["dcv_verdict"])]
        joint = claim.get("joint") or {}
        stats += [(joint[k], joint[f"{k}_verdict"]) for k in ("dcv_joint_total", "dcv_joint_local") if k in joint]
        for stat, verdict in stats:
            if verdict == CLAIM_HELD:
                assert stat["ci_low"] > 0, stat
            if verdict == CLAIM_REVERSED:
                assert stat["ci_high"] < 0, stat
            assert interval_text(stat) in visible_text(page)
    assert "DCV(C0) = V_SFT(C0) - V_RL(C0)" in visible_text(page)


def test_every_legend_describes_what_is_drawn(results):
    drawn = [fn(results) for _, fn in figures.FIGURES.values()] + [figures.tradeoff(results)]
    with_legend = [f for f in drawn if f is not None and f.legend]
    assert len(with_legend) >= 5
    for figure in with_legend:
        assert figure.unmatched_legend == (), figure.legend
    dcv = figures.dcv_heads(results)
    verdicts = {c["dcv_verdict"] for c in results["claims"]["circuits"].values()}
    assert {entry for entry in dcv.legend if not entry.startswith("negligible:")} == verdicts  # as the summary says


def test_a_legend_that_lies_about_its_bars_is_caught():
    """The report once drew DCV(C0) bars in purple under a legend of orange and green patches."""
    fig, ax = plt.subplots()
    ax.bar([0, 1], [0.002, -0.001], color="#7570b3")
    handles = [matplotlib.patches.Patch(color=figures.COLORS[m]) for m in ("sft", "rl")]
    ax.legend(handles, ["SFT damages more", "RL damages more"])
    assert figures.legend_mismatches(fig) == ["SFT damages more", "RL damages more"]
    ax.get_legend().remove()
    ax.bar([2], [0.003], color=figures.COLORS["sft"], label="SFT damages more")
    ax.scatter([], [], color=figures.COLORS["rl"], label="RL damages more")  # an entry with nothing drawn
    ax.legend()
    assert figures.legend_mismatches(fig) == ["RL damages more"]
    plt.close(fig)


def test_markdown_on_the_main_job_names_everything_and_writes_no_signed_zero(tmp_path, results):
    (tmp_path / "results.json").write_text(json.dumps(results))
    result = run_cli("report", str(tmp_path), "--markdown")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert signed_zeros(text) == [] and not re.search(r"\b(nan|inf)\b", text, flags=re.I)
    assert "| -s0" not in text and "| sft-s0@12 vs rl-s0@12 |" in text
    assert "sft-s0@acc:0.5 vs rl-s0@acc:0.5\\*" in text and "\\* matched levels" in text
    assert "Positive = SFT damages more" in text
    assert "not estimated (fewer than 10 points)" in text  # 4 points: the HTML refuses the fit too
    assert "### Paired tests on the same prior-task prompts" in text and "### Where in the text" in text
    assert "verdict: " in text.split("### Behaviour at every checkpoint")[0]  # the claims' verdicts come first
    for block in text.split("\n\n"):  # every row of a table has its header's cells (a token's "|" is escaped)
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({len(re.findall(r"(?<!\\)\|", line)) for line in rows}) <= 1, block
    last = results["runs"]["rl-s0"]["checkpoints"][-1]
    assert (
        f"| rl-s0 | {last['step']} | {number_text(last['target_accuracy'])} | {number_text(last['kl_forward'])} |"
        in text
    )


def test_every_summary_sentence_with_numbers_links_to_where_they_are(page):
    summary = re.search(r'<div id="summary">(.*?)</div>', page, flags=re.S).group(1)
    sentences = re.findall(r"<p>(.*?)</p>", summary, flags=re.S)
    linked = [re.search(r'href="#([a-z_]+)"', s) for s in sentences]
    for sentence, link in zip(sentences, linked):
        if re.search(r"SFT minus RL|held-out target gain", sentence):
            assert link is not None, sentence
        if link is not None:
            assert f'id="{link.group(1)}"' in page, link.group(1)
    assert "induction top-1 accuracy" in visible_text(page)  # the accuracies "accuracy lost" is computed from
