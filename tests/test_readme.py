"""The README's Python example runs as written, on the embedded model and a tiny fine-tuning run in place of
SmolLM2 and the main job's RL run (the only two values the test changes)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_python_example_runs(tmp_path, capsys):
    from forgetlens.config import FinetuneConfig
    from forgetlens.pipeline.finetune import finetune

    run = tmp_path / "rl-s0"
    cfg = FinetuneConfig(method="rl", steps=2, checkpoint_every=2, prompts_per_step=2, prior_eval_examples=8)
    cfg.rl.num_generations = 2
    finetune(cfg, run, log=lambda *a: None)
    example = python_blocks()[0]
    line = 'MODEL, RUN = "smollm2-135m", "runs/study/runs/rl-s0"'
    assert line in example  # the two values this test replaces
    exec(compile(example.replace(line, f'MODEL, RUN = "embedded", {str(run)!r}'), str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert "rl@2 {'value':" in printed


def test_the_readme_monitor_fragment_is_valid_python():
    compile(python_blocks()[1], str(README), "exec")
