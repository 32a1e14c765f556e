"""report.html in a real browser: every figure loads and draws something, and the page renders.

The report is rebuilt by `forgetlens report` from a stored results.json alone (a 2-seed, 2-task tiny study,
``tests/data/report/``), then opened in headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it and
sets FORGETLENS_REQUIRE_BROWSER=1, so there a missing browser fails instead of skipping).  A script added to a
copy of the page draws each image onto a canvas and counts its non-white pixels; ``--dump-dom`` returns what
it found.  A screenshot of the page must not be blank either.
"""

import gzip
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import chromium, chromium_flags, probe_in_chromium

from forgetlens.analysis.summary import MIN_EFFECT, derived_results
from forgetlens.report.text import MIN_FIT_POINTS

FIXTURE = Path(__file__).parents[1] / "data" / "report" / "results.json.gz"
CHECK = """
<script>
window.addEventListener("load", () => {
  const rows = [...document.images].map((img) => {
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    let ink = 0;
    if (img.complete && img.naturalWidth > 0) {
      const ctx = c.getContext("2d");
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < d.length; i += 4) if (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235) ink++;
    }
    return {id: img.id, loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth,
            ink: ink / Math.max(1, c.width * c.height)};
  });
  const pre = document.createElement("pre");
  pre.id = "forgetlens-check";
  pre.textContent = JSON.stringify(rows);
  document.body.appendChild(pre);
});
</script>
"""


NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?"


def check_what_the_page_says(dom: str, results: dict) -> None:
    """What a reader sees in the rendered page: every DCV in the summary written to the digits its interval
    supports (never a zero such as ``-0.000 [-0.001, -0.000]``), legends naming only the methods that ran, and
    per-head charts with a few readable head labels instead of every head's."""
    summary = html.unescape(re.search(r'<div id="summary">(.*?)</div>', dom, flags=re.S).group(1))
    dcvs = re.findall(rf"DCV\(C0\) = V_SFT\(C0\) - V_RL\(C0\) = ({NUMBER}) \[({NUMBER}), ({NUMBER})\]", summary)
    assert dcvs, summary
    for value, low, high in dcvs:
        assert float(value) != 0 or float(low) == float(high) == 0, (value, low, high)  # a zero only when it is one
        for text in (value, low, high):
            assert not re.fullmatch(r"-0(\.0+)?", text), text  # no signed zero
        if float(low) != float(high):
            assert len({low, high, value}) == 3, (value, low, high)  # distinct: enough digits to tell them apart
    ran = set(results["config"]["methods"])
    fixed = {"adaptation threshold", "SFT damages more (held)", "RL damages more (reversed)", "negligible"}
    fixed |= {"inconclusive", f"negligible: |DCV| < {MIN_EFFECT}"}
    for figure, legend in re.findall(r'<img id="([a-z_]+)"[^>]*data-legend="([^"]*)"', dom):
        for entry in filter(None, html.unescape(legend).split(", ")):
            assert entry in fixed or entry.split(" (")[0].split(":")[0] in ran, (figure, entry)
    labels = re.search(r'<img id="dcv_heads"[^>]*data-labels="([^"]*)"', dom).group(1).split(", ")
    n_heads = results["layout"]["n_layers"] * results["layout"]["n_heads"]
    assert 0 < len(labels) <= 12 * len(results["tasks"]) < n_heads * len(results["tasks"]), labels
    assert all(re.fullmatch(r"L\d+H\d+( \(C0\))?", label) for label in labels), labels


@pytest.mark.slow
def test_every_figure_loads_and_draws_and_the_page_renders(tmp_path):
    browser = chromium()
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(json.loads(gzip.open(FIXTURE, "rt").read())))
    result = subprocess.run([sys.executable, "-m", "forgetlens", "report", str(run)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    html = (run / "report.html").read_text()
    assert "<img" in html and 'src="http' not in html  # self-contained: every image inlined
    rows, dom = probe_in_chromium(html, CHECK, "forgetlens-check", tmp_path, budget_ms=10000)
    ids = {r["id"] for r in rows}
    for figure in ("target_accuracy", "prior_retention", "tradeoff", "heatmaps", "dcv_heads", "faithfulness_retention"):
        assert figure in ids, ids
    # the forgetting fits are drawn only over enough (task, checkpoint) points where retention is defined (the
    # fixture's tiny model never answers induction, so its points have none)
    fits = derived_results(json.loads(gzip.open(FIXTURE, "rt").read()))["forgetting_predictors"]["pooled"]
    assert ("forgetting_vs_predictors" in ids) == (fits["n_points"] >= MIN_FIT_POINTS), (fits["n_points"], ids)
    for r in rows:
        assert r["loaded"] and r["width"] > 100, r  # no broken image
        assert r["ink"] > 0.01, r  # a plot, not a blank area
    check_what_the_page_says(dom, json.loads(gzip.open(FIXTURE, "rt").read()))

    shot = tmp_path / "page.png"
    subprocess.run(
        [
            browser,
            *chromium_flags(tmp_path / "p2"),
            "--window-size=1200,3000",
            f"--screenshot={shot}",
            (run / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)  # [height, width, channels] in 0..1
    assert pixels.shape[0] >= 3000 and (pixels[..., :3] < 0.9).mean() > 0.02
