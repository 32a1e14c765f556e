"""Tiny random models of the real architectures through the same CLI a GPU run uses.

Qwen2 (with GQA), Llama and GPT-2, each saved with a tokenizer: discover -> run (fine-tune 2 SFT and 2 RL
steps, measure, report) -> audit; a PEFT LoRA adapter directory audited against its base; the shipped
Qwen2.5-3B config run on a tiny Qwen2 and planned for 1 and 8 GPUs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import make_tiny

ROOT = Path(__file__).resolve().parents[2]
SCIKNOWEVAL_FORMAT = Path(__file__).parents[1] / "data" / "sciknoweval-format"

TINY_STUDY = """
model: {model}
tasks: [ioi]
seeds: [0]
n_boot: 50
finetune:
  steps: 2
  checkpoint_every: 2
  prompts_per_step: 4
  prior_eval_examples: 8
  kl_samples: 1
  max_records: 24
  rl: {{num_generations: 2}}
discovery: {{n_examples: 16, batch_size: 16}}
"""


def forgetlens(*args):
    env = {**os.environ, "FORGETLENS_QUIET": "1", "FORGETLENS_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "forgetlens", *args], capture_output=True, text=True, env=env)


def save_tiny(arch: str, tokenizer, where: Path) -> Path:
    model = make_tiny(arch, len(tokenizer))
    model.save_pretrained(where)
    tokenizer.save_pretrained(where)
    return where


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["qwen2", "llama", "gpt2"])
def test_discover_run_audit_report_on_a_tiny_model(tmp_path, tokenizer, arch):
    model_dir = save_tiny(arch, tokenizer, tmp_path / arch)
    result = forgetlens(
        "discover",
        "--task",
        "ioi",
        "--model",
        str(model_dir),
        "--n-examples",
        "16",
        "--out",
        str(tmp_path / "discover.json"),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "discover.json").read_text())["layout"]["architecture"] == arch

    cfg = tmp_path / "study.yaml"
    cfg.write_text(TINY_STUDY.format(model=model_dir))
    run = tmp_path / "run"
    result = forgetlens("run", "--config", str(cfg), "--out", str(run))
    assert result.returncode == 0, result.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["layout"]["architecture"] == arch
    assert set(results["runs"]) == {"sft-s0", "rl-s0"}
    assert all(r["budget"]["optimizer_steps"] == 2 for r in results["runs"].values())
    assert "-s0@2" in results["tasks"]["ioi"]["dcv"]
    assert 'id="heatmaps"' in (run / "report.html").read_text()

    result = forgetlens(
        "audit",
        "--base",
        str(model_dir),
        "--tuned",
        f"sft={run / 'runs' / 'sft-s0'}",
        "--tuned",
        f"rl={run / 'runs' / 'rl-s0'}",
        "--tasks",
        "ioi",
        "--n-examples",
        "16",
        "--n-boot",
        "50",
        "--out",
        str(tmp_path / "audit.json"),
    )
    assert result.returncode == 0, result.stderr
    audit = json.loads((tmp_path / "audit.json").read_text())
    assert set(audit["tasks"]["ioi"]["models"]) == {"sft@2", "rl@2"}
    assert "@2" in audit["tasks"]["ioi"]["dcv"]


@pytest.mark.slow
def test_lora_adapter_directory_audits_against_its_base(tmp_path, tokenizer):
    import torch
    from peft import LoraConfig, get_peft_model

    base_dir = save_tiny("qwen2", tokenizer, tmp_path / "base")
    model = make_tiny("qwen2", len(tokenizer))
    lora = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj"], init_lora_weights=False)
    )  # random B: the adapter changes the model
    lora.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    assert not (tmp_path / "adapter" / "config.json").exists()

    result = forgetlens(
        "audit",
        "--base",
        str(base_dir),
        "--tuned",
        f"lora={tmp_path / 'adapter'}",
        "--tasks",
        "ioi",
        "--n-examples",
        "16",
        "--n-boot",
        "50",
        "--out",
        str(tmp_path / "a.json"),
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads((tmp_path / "a.json").read_text())["tasks"]["ioi"]["models"]["lora"]
    drift = torch.tensor(stats["drift"]["value"])  # [layer, head]
    assert drift.abs().max() > 0  # the adapter was merged: head outputs moved


def shipped_qwen_config_on(model_dir: Path) -> dict:
    """The shipped Qwen2.5-3B config with the model pointed at ``model_dir``, the data at a SciKnowEval-format
    fixture, and the budgets (steps, seeds, prompts, group size, lengths) cut to seconds; every other setting
    (bf16, gradient checkpointing, Dr.GRPO, beta 0, the SFT learning-rate grid, micro-batching) is kept."""
    cfg = yaml.safe_load((ROOT / "configs" / "qwen2.5-3b-sciknoweval.yaml").read_text())
    cfg.update(
        model=str(model_dir),
        data=str(SCIKNOWEVAL_FORMAT),
        tasks=["ioi"],
        seeds=[0],
        sft_lr_grid=cfg["sft_lr_grid"][:1],
        n_boot=50,
    )
    cfg["finetune"].update(
        steps=2,
        checkpoint_every=2,
        prompts_per_step=2,
        prior_eval_examples=8,
        kl_samples=1,
        max_new_tokens=8,
        micro_batch=2,
    )
    cfg["finetune"]["rl"].update(num_generations=4, max_completion_length=8)
    cfg["discovery"].update(n_examples=16, batch_size=16, dbm={"steps": 60})
    cfg["own_circuits"].update(n_null=100)
    cfg["benchmarks"].update(tasks=["hellaswag", "capitals_local"], limit=None)  # one hub task, one local task
    return cfg


@pytest.mark.slow
def test_shipped_qwen_config_runs_end_to_end_on_a_tiny_qwen2(tmp_path, tokenizer):
    from helpers import local_task_dir

    model_dir = save_tiny("qwen2", tokenizer, tmp_path / "qwen2")
    cfg = shipped_qwen_config_on(model_dir)
    cfg["benchmarks"]["include_path"] = str(local_task_dir(tmp_path))
    assert cfg["finetune"]["bf16"] and cfg["finetune"]["gradient_checkpointing"]
    path = tmp_path / "qwen.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    result = forgetlens("run", "--config", str(path), "--out", str(run))
    assert result.returncode == 0, result.stderr
    results = json.loads((run / "results.json").read_text())
    grid_run = f"sft-lr{cfg['sft_lr_grid'][0]:g}-s0"
    assert set(results["runs"]) == {"sft-s0", "rl-s0", "sft-rl-s0", grid_run}  # RL from SFT, as the paper trains it
    assert set(results["tasks"][cfg["tasks"][0]]["own_circuits"]) == {"dbm", "attribution"}
    assert results["config"]["finetune"]["rl"]["num_generations"] == 4
    rl_log = json.loads((run / "runs" / "rl-s0" / "training_log.json").read_text())
    assert any("loss" in row for row in rl_log)
    # no local HellaSwag: one warning line per model, and the run went on; the local task was scored
    warned = [line for line in result.stderr.splitlines() if "benchmark 'hellaswag' skipped" in line]
    assert len(warned) == 5 and all(line.startswith("warning: ") for line in warned), result.stderr
    scores = results["benchmarks"]["scores"]
    assert set(scores) == {"base", "sft-s0@2", "rl-s0@2", "sft-rl-s0@2", f"{grid_run}@2"}
    assert all(set(s) == {"capitals_local"} for s in scores.values())
    assert 'id="benchmarks"' in (run / "report.html").read_text()


@pytest.mark.slow
def test_plan_prints_the_shipped_config_for_one_and_eight_gpus():
    result = forgetlens(
        "plan", "--config", str(ROOT / "configs" / "qwen2.5-3b-sciknoweval.yaml"), "--gpus", "1x80,8x80"
    )
    assert result.returncode == 0, result.stderr
    assert "on 1 x 80 GiB" in result.stdout and "on 8 x 80 GiB" in result.stdout
    assert "3.09 B parameters" in result.stdout
    for stage in ("circuits", "finetune: sft", "finetune: rl", "measure"):
        assert stage in result.stdout


def test_plan_memory_adds_up_and_sharding_shrinks_it():
    from forgetlens.config.options import StudyConfig
    from forgetlens.pipeline.plan import Hardware, ModelShape, Setting, estimate

    shape = ModelShape("m", 1_000_000_000, 24, 2048, 16, 4, 128, 5504, 32000)
    cfg = StudyConfig()
    one, eight = Hardware(1, 80), Hardware(8, 80)

    def sft(hw, s):
        return next(p for p in estimate(cfg, shape, hw, s, 256) if p.stage == "finetune: sft")

    plain = sft(one, Setting(0, 0, 4))
    assert plain.parts["weights"] == 4 * shape.n_params and plain.parts["gradients + optimizer"] == 12 * shape.n_params
    assert sft(eight, Setting(3, 0, 4)).parts["weights"] == plain.parts["weights"] / 8
    assert sft(eight, Setting(2, 0, 4)).parts["gradients + optimizer"] == 12 * shape.n_params / 8
    lora = sft(one, Setting(0, 16, 4))
    assert lora.parts["gradients + optimizer"] < plain.parts["gradients + optimizer"] / 50
    assert lora.parts["activations"] == plain.parts["activations"] and lora.total < plain.total
    assert sft(one, Setting(0, 0, 8)).parts["activations"] == 2 * plain.parts["activations"]


@pytest.mark.parametrize(
    "args,needles",
    [
        (["plan", "--gpus", "eight"], ["--gpus 'eight'", "COUNTxGIB"]),
        (["plan", "--gpus", "1x80", "--prompt-tokens", "0"], ["--prompt-tokens"]),
    ],
)
def test_plan_bad_input_is_one_line(args, needles):
    result = forgetlens(*args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.slow
def test_missing_tokenizer_and_missing_data_are_one_line(tmp_path, tokenizer):
    model = make_tiny("qwen2", len(tokenizer))
    model.save_pretrained(tmp_path / "no-tokenizer")
    result = forgetlens(
        "discover", "--task", "ioi", "--model", str(tmp_path / "no-tokenizer"), "--out", str(tmp_path / "o.json")
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "tokenizer" in lines[0] and str(tmp_path / "no-tokenizer") in lines[0]

    cfg = tmp_path / "s.yaml"
    cfg.write_text("data: /no/such/sciknoweval\n")
    result = forgetlens("run", "--config", str(cfg), "--out", str(tmp_path / "run"))
    assert result.returncode != 0 and "data: /no/such/sciknoweval does not exist" in result.stderr


@pytest.mark.slow
def test_two_process_launch_trains_data_parallel_and_matches_one_process(tmp_path):
    """torchrun (what `accelerate launch` does on GPUs) with 2 CPU processes: each trains half of every batch,
    rank 0 alone measures and reports, and SFT's losses equal a one-process run's."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_STUDY.format(model="embedded"))
    # CPU processes on any machine (a one-GPU machine cannot give each rank a GPU of its own)
    env = {**os.environ, "FORGETLENS_QUIET": "1", "FORGETLENS_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "-m",
            "forgetlens",
            "run",
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("report: ") == 1  # only rank 0 reports
    one = subprocess.run(
        [sys.executable, "-m", "forgetlens", "run", "--config", str(cfg), "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert one.returncode == 0, one.stderr

    def sft_state(run):
        return json.loads(
            (tmp_path / run / "runs" / "sft-s0" / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text()
        )

    assert sft_state("two")["train_batch_size"] == 2 and sft_state("one")["train_batch_size"] == 4
    losses = {run: [h["loss"] for h in sft_state(run)["log_history"] if "loss" in h] for run in ("one", "two")}
    assert len(losses["one"]) == 2 and losses["two"] == pytest.approx(losses["one"], rel=1e-4)
    assert (tmp_path / "two" / "report.html").exists()


@pytest.mark.slow
def test_lora_fine_tuning_keeps_adapter_checkpoints_that_the_study_measures(tmp_path):
    """finetune.lora_rank > 0 trains PEFT adapters for both methods; checkpoints are adapter directories,
    merged onto the base for behaviour and circuit measurement."""
    cfg = tmp_path / "lora.yaml"
    cfg.write_text(TINY_STUDY.format(model="embedded").replace("  steps: 2\n", "  steps: 2\n  lora_rank: 4\n"))
    run = tmp_path / "run"
    result = forgetlens("run", "--config", str(cfg), "--out", str(run))
    assert result.returncode == 0, result.stderr
    for name in ("sft-s0", "rl-s0"):
        ckpt = run / "runs" / name / "checkpoints" / "checkpoint-2"
        assert (ckpt / "adapter_config.json").exists() and not (ckpt / "model.safetensors").exists()
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["finetune"]["lora_rank"] == 4
    drift = results["tasks"]["ioi"]["models"]["sft-s0@2"]["drift"]["value"]
    assert max(max(row) for row in drift) > 0  # the merged adapter moved the heads
