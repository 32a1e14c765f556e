"""The ``forgetlens`` command line.

Every command turns a :class:`ForgetlensError` (and click's own usage errors)
into one line on stderr and exit status 2; nothing half-written is left behind
because results are written atomically.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from forgetlens.cli_options import apply_options, field_option, field_options, refuse_problems
from forgetlens.config.options import (
    METRIC_NAMES,
    RETENTION_KINDS,
    AuditConfig,
    DiscoveryConfig,
    FinetuneConfig,
    SweepConfig,
    deferred_validation,
)
from forgetlens.embedded_build.config import PretrainConfig
from forgetlens.errors import ForgetlensError
from forgetlens.models.packaged import PACKAGED
from forgetlens.utils import check_writable

"""The defaults the options below show: the dataclasses own them (torch-free to import, so ``--help`` loads no
torch: ``METRIC_NAMES`` spells out ``tasks.base.METRICS``, a test keeps them equal)."""


def _notice(line: str) -> None:
    """What a command is about to do, on stderr with the progress display (and, like it, off with --quiet)."""
    from forgetlens.progress import default_mode

    if default_mode() != "quiet":
        click.echo(line, err=True)


def _seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` as a list of integers (one line naming the option otherwise)."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ForgetlensError(f"--seeds: expected comma-separated integers, got {text!r}") from None


def _check_resume_overwrite(resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise ForgetlensError(
            "--resume and --overwrite contradict each other (continue the run, or delete it); give one"
        )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "terminal_width": 120, "max_content_width": 120})
@click.version_option(package_name="forgetlens")
def cli() -> None:
    """forgetlens: what fine-tuning does to a language model's circuits.

    Long work shows its progress on stderr (a live display on a terminal, one line per finished piece of work
    otherwise); --quiet anywhere on the command line turns that off, --debug shows a traceback for an error.
    """


@cli.command("tasks")
def tasks_cmd() -> None:
    """List the prior-capability tasks, one per line, with the models whose default set holds them."""
    from forgetlens.tasks.registry import EMBEDDED_TASKS, REAL_MODEL_TASKS, TASKS

    for name in TASKS:
        sets = [
            label for label, names in (("real models", REAL_MODEL_TASKS), ("embedded", EMBEDDED_TASKS)) if name in names
        ]
        click.echo(f"{name}\t{TASKS[name].description} [default for: {', '.join(sets) or 'none'}]")


DISCOVER_FLAGS: dict[str, str | None] = {
    "method": None,
    "k": None,
    "faithfulness_target": "--target",
    "ablation": None,
    "ig_steps": None,
    "n_examples": None,
    "dbm.objective": "--dbm-objective",
    "dbm.positions": "--dbm-positions",
    "dbm.sparsity": "--dbm-sparsity",
    "dbm.steps": "--dbm-steps",
    "dbm.batch_size": "--dbm-batch-size",
    "seed": None,
}
"""The DiscoveryConfig fields ``forgetlens discover`` exposes, and their flags where not ``--FIELD-NAME``."""


@cli.command("discover")
@click.option("--task", "task_name", required=True, help="Prior task (see `forgetlens tasks`).")
@click.option(
    "--model",
    default="embedded",
    show_default=True,
    help=f"Model directory, cached HF id, `embedded`, or {', '.join(f'`{alias}`' for alias in PACKAGED)}.",
)
@field_options(DiscoveryConfig, DISCOVER_FLAGS)
@click.option(
    "--metric",
    type=click.Choice(METRIC_NAMES),
    default=DiscoveryConfig().metric,
    show_default=True,
    help="Task metric at the answer position; the last three see the whole vocabulary.",
)
@click.option(
    "--full-curve",
    is_flag=True,
    help="Faithfulness at every circuit size (default: find k by bisection, about log2(heads) sizes).",
)
@click.option("--allow-download", is_flag=True, help="Let transformers fetch a model from the Hub.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSON file to write.")
def discover_cmd(
    task_name: str, model: str, metric: str, full_curve: bool, allow_download: bool, out: Path, **fields: object
) -> None:
    """Find a prior task's head-level circuit and write it as JSON."""
    from forgetlens.circuits.discover import circuit_to_json, timed_discovery
    from forgetlens.models.heads import HeadLayout
    from forgetlens.models.loading import check_model, configure_threads, load_model, model_record
    from forgetlens.tasks.registry import get_task
    from forgetlens.utils import atomic_write_text, versions

    task = get_task(task_name)
    seed = fields["seed"] if fields["seed"] is not None else DiscoveryConfig().seed
    cfg = apply_options(DiscoveryConfig(), {**fields, "metric": metric, "full_curve": full_curve, "dbm__seed": seed})
    problems = cfg.problems()  # "field: ..." lines, each under the flag of that field
    if problems:
        flags = {path: flag or "--" + path.split(".")[-1].replace("_", "-") for path, flag in DISCOVER_FLAGS.items()}
        lines = []
        for problem in problems:
            field, message = problem.split(":", 1)
            lines.append(f"{flags.get(field, field)}:{message}")
        raise ForgetlensError("\n".join(lines))
    check_writable(out, "--out")
    check_model(model)
    loaded = load_model(model, allow_download=allow_download)
    configure_threads(loaded.model)
    layout = HeadLayout.of(loaded.model)
    circuit, seconds = timed_discovery(loaded.model, loaded.tokenizer, task, cfg)
    result = circuit_to_json(circuit, model, cfg, layout, seconds, versions())
    result["model_record"] = model_record(model)
    atomic_write_text(out, json.dumps(result, indent=2))
    click.echo(f"{task.name} on {model} ({layout.n_layers} layers x {layout.n_heads} heads), method={cfg.method}")
    click.echo(f"{'rank':>4}  {'layer':>5}  {'head':>4}  {'score':>9}  in circuit")
    ranked = sorted(result["heads"], key=lambda h: -abs(h["score"]))
    members = {tuple(h) for h in result["circuit"]["heads"]}
    for rank, h in enumerate(ranked[: max(10, circuit.k)], 1):
        mark = "*" if (h["layer"], h["head"]) in members else ""
        click.echo(f"{rank:>4}  {h['layer']:>5}  {h['head']:>4}  {h['score']:>9.4f}  {mark}")
    click.echo(
        f"circuit: k={circuit.k} of {layout.n_total} heads, faithfulness={circuit.faithfulness:.3f} "
        f"({cfg.ablation} ablation) -> {out}"
    )
    if circuit.dbm is not None:
        click.echo(
            f"dbm ({cfg.dbm.objective}, {cfg.dbm.positions} positions): share of the all-heads effect "
            f"{circuit.dbm.objective_faithfulness:.3f}, {circuit.dbm.forward_equivalents:.1f} forward-equivalents, "
            f"{circuit.dbm.seconds:.1f} s"
        )


@cli.command("pretrain-base")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory (default: the package's embedded model directory).",
)
@field_options(PretrainConfig, {"seed": None, "steps": None, "threads": None})
@click.option("--resume", is_flag=True, help="Continue from the last training-state snapshot in --out.")
@click.option(
    "--start-from",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="A model directory holding this configuration's weights at the end of stage --start-after; "
    "only the later stages are trained.",
)
@click.option(
    "--start-after",
    default="main",
    show_default=True,
    help="The last stage --start-from has completed: main (stages 1-2) or format (stages 1-3).",
)
def pretrain_cmd(out, resume, start_from, start_after, **fields) -> None:
    """Rebuild the embedded base model (tokenizer, weights, model card) from a seed."""
    from forgetlens.embedded_build.pretrain import pretrain_base
    from forgetlens.embedded_build.validation import record_circuits
    from forgetlens.models.loading import EMBEDDED_DIR

    cfg = apply_options(PretrainConfig(), fields)
    refuse_problems(cfg.problems())  # every problem at once, each naming its flag
    out = out or EMBEDDED_DIR
    check_writable(out, "--out")
    card = pretrain_base(cfg, out, resume=resume, start_from=start_from, start_after=start_after, log=click.echo)
    card = record_circuits(out, card)
    for name, acc in card["held_out_accuracy"].items():
        click.echo(f"{name:>14}: held-out accuracy {acc['accuracy']:.3f}")
    click.echo(f"wrote {out} in {card['train_seconds']:.0f} s of training")


@cli.command("finetune")
@field_option(FinetuneConfig, "method", required=True)
@field_options(
    FinetuneConfig,
    {
        "model": None,
        "data": None,
        "synthetic_target": None,
        "steps": None,
        "checkpoint_every": None,
        "prompts_per_step": None,
        "max_records": None,
        "rl.num_generations": None,
        "rl.loss_type": None,
        "rl.beta": None,
        "preserve.lam": None,
        "preserve.heads": "--heads",
        "monitor.every": "--monitor-every",
        "monitor.threshold": "--monitor-threshold",
        "monitor.action": "--monitor-action",
        "seed": None,
    },
)
@click.option("--lr", type=float, default=None, help="Learning rate of this method (FinetuneConfig.lr_sft or lr_rl).")
@click.option(
    "--init-from",
    type=click.Path(path_type=Path),
    default=None,
    help="Train from this run's last checkpoint (or this checkpoint directory) instead of --model, e.g. RL after SFT; "
    "behaviour is still measured against --model.",
)
@click.option(
    "--full-eval",
    is_flag=True,
    help="On a real model, evaluate with FinetuneConfig's default sizes (200 prompts per prior task, KL on every "
    "evaluation prompt x 4) instead of the main job's (32 per task, KL on 24 x 1): minutes per checkpoint.",
)
@click.option(
    "--keep-optimizer",
    is_flag=True,
    help="Keep the checkpoints' optimizer state once the run is complete (twice the weights' size on disk).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Delete an existing --out that forgetlens made (it holds its run marker), then start again.",
)
@click.option("--allow-download", is_flag=True, help="Let the Hugging Face libraries fetch models (offline otherwise).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory.")
def finetune_cmd(
    lr: float | None,
    init_from: Path | None,
    full_eval: bool,
    keep_optimizer: bool,
    resume: bool,
    overwrite: bool,
    allow_download: bool,
    out: Path,
    **fields: object,
) -> None:
    """Fine-tune with SFT, RL or a circuit-keeping variant; checkpoints, and behaviour at each."""
    from forgetlens.config.methods import finetune_method
    from forgetlens.config.options import sized_for_real_model
    from forgetlens.models.loading import is_embedded
    from forgetlens.pipeline.finetune import finetune

    _check_resume_overwrite(resume, overwrite)
    check_writable(out, "--out")
    cfg = apply_options(FinetuneConfig(), fields)  # finetune() reports every problem of the result at once
    rate = finetune_method(cfg.method).learning_rate_option
    cfg = apply_options(
        cfg,
        {rate: lr, "init_from": None if init_from is None else str(init_from), "keep_optimizer": keep_optimizer},
    )
    if not is_embedded(cfg.model) and not full_eval:
        with deferred_validation():  # finetune() reports every problem at once
            cfg = sized_for_real_model(cfg)
        _notice(
            f"evaluation sized for a real model: {cfg.prior_eval_examples} prompts per prior task, forward KL on "
            f"{cfg.kl_prompts} prompts x {cfg.kl_samples} sample(s) (--full-eval for the defaults)"
        )
    rows = finetune(cfg, out, resume=resume, overwrite=overwrite, log=click.echo)
    tasks = list(rows[0]["prior"])
    click.echo(f"{'step':>5} {'target acc':>10} {'KL(base||tuned)':>16} " + " ".join(f"{t[:12]:>12}" for t in tasks))
    for r in rows:
        click.echo(
            f"{r['step']:>5} {r['target_accuracy']:>10.3f} {r['kl_forward']:>16.4f} "
            + " ".join(f"{r['prior'][t]['retention_accuracy']:>12.3f}" for t in tasks)
        )
    click.echo(f"(prior columns: accuracy retention vs step 0) -> {out}/behaviour.json")


AUDIT_FLAGS: dict[str, str | None] = {
    "compare": None,
    "tasks": None,
    "method": None,
    "k": None,
    "n_boot": None,
    "n_examples": None,
    "top_m": None,
    "exact_everywhere": None,
    "anatomy": None,
    "anatomy_metric": None,
    "own_circuits": None,
    "seed": None,
}
"""The AuditConfig fields ``forgetlens audit`` exposes besides ``--base`` and ``--tuned``."""


@cli.command("audit")
@field_option(AuditConfig, "base", required=True)
@field_option(AuditConfig, "tuned", required=True)
@field_options(AuditConfig, AUDIT_FLAGS)
@click.option("--allow-download", is_flag=True, help="Let the Hugging Face libraries fetch models (offline otherwise).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSON file to write.")
def audit_cmd(allow_download: bool, out: Path, **fields) -> None:
    """Measure how tuned models degrade the base model's circuits (per head and per circuit, with CIs)."""
    from forgetlens.artefacts import write_json
    from forgetlens.models.loading import check_model
    from forgetlens.pipeline.audit import audit, default_examples, expand_tuned, parse_tuned
    from forgetlens.pipeline.results import per_head_csv
    from forgetlens.tasks.registry import parse_task_list
    from forgetlens.utils import atomic_write_text

    cfg = apply_options(AuditConfig(), fields)
    refuse_problems(cfg.problems())  # every problem at once, each naming its flag
    check_writable(out, "--out")
    check_model(cfg.base)
    models = expand_tuned(parse_tuned(cfg.tuned))
    task_list = parse_task_list(cfg.tasks, model=cfg.base)
    n = cfg.n_examples or default_examples(cfg.base)
    _notice(
        f"audit: {len(models)} tuned model(s) ({', '.join(models)}) x {len(task_list)} task(s), {n} prompts per "
        f"split, exact CMAP for C0 and {'every head' if cfg.exact_everywhere else f'{cfg.top_m} more heads'}"
        + ("; --n-examples for more prompts (narrower intervals, longer)" if cfg.n_examples is None else "")
    )
    result = audit(cfg)
    write_json(out, result)
    atomic_write_text(out.with_suffix(".per_head.csv"), per_head_csv(result))
    from forgetlens.report.audit import audit_lines

    for line in audit_lines(result):
        click.echo(line)
    if cfg.anatomy:
        from forgetlens.report.anatomy import anatomy_lines

        for task, r in result["tasks"].items():
            for label, a in r["anatomy"].items():
                for line in anatomy_lines(task, label, a):
                    click.echo(line)
    click.echo(f"-> {out} and {out.with_suffix('.per_head.csv')}")


@cli.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Study YAML (default: the main job, configs/smollm2-135m-quick.yaml; the embedded study is "
    "configs/embedded-study.yaml).",
)
@click.option("--seeds", default=None, help="Comma-separated training seeds, e.g. 0,1,2 (overrides the config).")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted study in --out, skipping finished stages; --seeds may add seeds to it.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Delete an existing --out that forgetlens made (it holds its run marker), then start again.",
)
@click.option(
    "--jobs",
    type=int,
    default=1,
    show_default=True,
    help="Worker processes: base circuits, fine-tuning runs and checkpoint measurements run side by side "
    "(one CPU thread each for small models); results are identical to --jobs 1.",
)
@click.option("--allow-download", is_flag=True, help="Let the Hugging Face libraries fetch models (offline otherwise).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory.")
def run_cmd(config_path, seeds, resume, overwrite, jobs, allow_download, out) -> None:
    """The whole study: base circuits, SFT and RL runs, circuit metrics at every checkpoint, report."""
    from forgetlens.config.loading import load_study_config
    from forgetlens.config.options import MAIN_JOB_CONFIG
    from forgetlens.pipeline.study import run_study
    from forgetlens.report.html import summary_sentences, summary_table, write_report

    _check_resume_overwrite(resume, overwrite)
    check_writable(out, "--out")
    cfg = load_study_config(config_path or MAIN_JOB_CONFIG)
    if seeds is not None:
        cfg.seeds = _seeds(seeds)
    if jobs < 1:
        raise ForgetlensError(f"--jobs must be at least 1, got {jobs}")
    results = run_study(cfg, out, resume=resume, overwrite=overwrite, log=click.echo, jobs=jobs, render=write_report)
    if not results:
        return  # a non-main process of a multi-GPU launch: the main process reports

    click.echo(summary_table(results) + "\n")
    click.echo("\n\n".join(click.wrap_text(line, width=110) for line in summary_sentences(results)))
    click.echo(f"report: {out / 'report.html'}")


@cli.command("frontier", short_help="Each method's frontier of adaptation against forgetting, compared.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Frontier YAML (FrontierConfig; e.g. configs/smollm2-135m-frontier.yaml). Default: the embedded model's "
    "small demo.",
)
@click.option("--seeds", default=None, help="Comma-separated training seeds, e.g. 0,1,2 (overrides the config).")
@click.option(
    "--max-new-tokens",
    type=int,
    default=None,
    help="Tokens every method generates, in RL's rollouts and in the evaluation alike (overrides "
    "finetune.max_new_tokens and finetune.rl.max_completion_length).",
)
@click.option(
    "--target-accuracy",
    type=float,
    default=None,
    help="A target accuracy to reach: the cheapest configurations that reach it while every prior task keeps "
    "--retention-floor (overrides analysis.target_accuracy; with --resume, asked of the runs already made).",
)
@click.option(
    "--retention-floor",
    type=float,
    default=None,
    help="Least accuracy retention every prior task must keep for a pick (overrides analysis.retention_floor).",
)
@click.option(
    "--retention",
    type=click.Choice(RETENTION_KINDS),
    default=None,
    help="The frontier's y axis: ratio (tuned over base accuracy) or kept (the share of the base's right answers "
    "still right; gains count for nothing). Overrides analysis.retention; with --resume, asked of the runs made.",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted frontier in --out (each run where it stopped).")
@click.option("--overwrite", is_flag=True, help="Delete --out first (only a directory forgetlens made).")
@click.option("--jobs", type=int, default=1, show_default=True, help="Worker processes, one run each.")
@click.option("--allow-download", is_flag=True, help="Let the Hugging Face libraries fetch models (offline otherwise).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Frontier directory.")
def frontier_cmd(
    config_path,
    seeds,
    max_new_tokens,
    target_accuracy,
    retention_floor,
    retention,
    resume,
    overwrite,
    jobs,
    allow_download,
    out,
) -> None:
    """Each method's Pareto frontier of target accuracy against prior-skill retention over learning rates, steps
    and seeds, and the methods compared at matched accuracy (frontier.json, frontier.html)."""
    import dataclasses

    from forgetlens.config.loading import load_frontier_config
    from forgetlens.config.options import FrontierConfig
    from forgetlens.pipeline.frontier import run_frontier, validate_frontier
    from forgetlens.report.frontier import frontier_summary, write_frontier_report

    _check_resume_overwrite(resume, overwrite)
    check_writable(out, "--out")
    cfg = load_frontier_config(config_path) if config_path is not None else FrontierConfig()
    if seeds is not None:
        cfg.seeds = _seeds(seeds)
    if max_new_tokens is not None:
        if max_new_tokens < 1:
            raise ForgetlensError(f"--max-new-tokens: expected a positive number of tokens, got {max_new_tokens}")
        rl = dataclasses.replace(cfg.finetune.rl, max_completion_length=max_new_tokens)
        cfg.finetune = dataclasses.replace(cfg.finetune, max_new_tokens=max_new_tokens, rl=rl)
    picks = {"target_accuracy": target_accuracy, "retention_floor": retention_floor, "retention": retention}
    cfg.analysis = dataclasses.replace(cfg.analysis, **{k: v for k, v in picks.items() if v is not None})
    validate_frontier(cfg, "options")
    results = run_frontier(
        cfg, out, resume=resume, overwrite=overwrite, log=click.echo, jobs=jobs, render=write_frontier_report
    )
    click.echo("\n".join(frontier_summary(results)))
    click.echo(f"report: {out / 'frontier.html'}")


@cli.command("sweep")
@field_options(SweepConfig, {"config": None, "lrs": None, "sft_lrs": None, "rl_lrs": None, "seed": None, "jobs": None})
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Sweep directory.")
def sweep_cmd(out: Path, **fields) -> None:
    """Learning rates by the rule: per method, the best final held-out target accuracy on seed 100."""
    from forgetlens.config.loading import load_study_config
    from forgetlens.pipeline.sweep import SweepMethod, run_sweep, sweep_base, sweep_configs, sweep_table

    cfg = apply_options(SweepConfig(), fields)
    refuse_problems(cfg.problems())  # every problem at once, each naming its flag
    grid: dict[SweepMethod, list[float]] = {
        "sft": cfg.sft_lrs if cfg.sft_lrs is not None else cfg.lrs,
        "rl": cfg.rl_lrs if cfg.rl_lrs is not None else cfg.lrs,
    }
    check_writable(out, "--out")
    base = sweep_base(load_study_config(cfg.config) if cfg.config is not None else None)
    configs = sweep_configs(base, grid, cfg.seed)
    for run in configs.values():  # every run's options checked before the first one trains
        refuse_problems(run.problems())
    click.echo(sweep_table(run_sweep(configs, out, cfg.jobs)))


@cli.command("plan")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Study YAML (default: the main job's).",
)
@click.option(
    "--gpus",
    default=None,
    help="Hardware as COUNTxGIB, comma-separated for several plans (e.g. 1x80,8x80); default: detected.",
)
@click.option(
    "--prompt-tokens",
    type=int,
    default=None,
    help="Prompt length assumed for training (default: measured on the data with the model's tokenizer "
    "when both are on disk, else 512).",
)
def plan_cmd(config_path, gpus, prompt_tokens) -> None:
    """Memory per GPU and forward/backward passes of every stage, and which settings make training fit."""
    from forgetlens.config.loading import load_study_config
    from forgetlens.config.options import MAIN_JOB_CONFIG
    from forgetlens.pipeline.plan import Hardware, detected_hardware, format_plan, model_shape, prompt_length

    cfg = load_study_config(config_path or MAIN_JOB_CONFIG, check_paths=False)
    hardware = [Hardware.parse(g) for g in gpus.split(",")] if gpus else [detected_hardware()]
    if prompt_tokens is not None and prompt_tokens < 1:  # every option checked before the model is read
        raise ForgetlensError(f"--prompt-tokens must be positive, got {prompt_tokens}")
    shape = model_shape(cfg.model)
    if prompt_tokens is not None:
        source = "given"
    else:
        prompt_tokens, source = prompt_length(cfg)
    click.echo("\n\n".join(format_plan(cfg, shape, hw, prompt_tokens, source) for hw in hardware))


@cli.command("report", short_help="Rebuild a study's report.html or a frontier's frontier.html from its JSON.")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--markdown", is_flag=True, help="Print the results as Markdown tables instead (writes nothing).")
def report_cmd(run_dir: Path, markdown: bool) -> None:
    """Rebuild a study's report.html from its results.json, or a frontier's frontier.html from its frontier.json.

    Nothing else in RUN_DIR is read."""
    from forgetlens.analysis.summary import derived_results
    from forgetlens.pipeline.results import read_results
    from forgetlens.report.html import write_report
    from forgetlens.report.markdown import markdown_tables
    from forgetlens.utils import first_line, short_repr

    if (run_dir / "frontier.json").exists() and not (run_dir / "results.json").exists():
        _frontier_report(run_dir, markdown)
        return
    results = read_results(run_dir / "results.json")
    if not markdown:
        check_writable(run_dir / "report.html", "RUN_DIR")
    try:  # the schema checks each field; this catches fields that disagree with each other (a file from others)
        results.update(derived_results(results))  # what the analysis says today, in the page and in the markdown
        if markdown:
            click.echo(markdown_tables(results))
            return
        write_report(results, run_dir / "report.html")
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ForgetlensError(
            f"{run_dir / 'results.json'}: its fields do not fit together ({type(exc).__name__}: "
            f"{short_repr(first_line(exc))}); expected a results.json written by forgetlens run"
        ) from None
    click.echo(f"report: {run_dir / 'report.html'}")


def _frontier_report(run_dir: Path, markdown: bool) -> None:
    """``report`` of a frontier directory: frontier.html (or its tables as Markdown) from frontier.json."""
    from forgetlens.artefacts import read_json
    from forgetlens.pipeline.frontier import SCHEMA
    from forgetlens.report.frontier import frontier_markdown, write_frontier_report
    from forgetlens.utils import first_line, short_repr

    results = read_json(run_dir / "frontier.json")
    if results.get("schema") != SCHEMA:
        raise ForgetlensError(
            f"{run_dir / 'frontier.json'}: schema {short_repr(results.get('schema'))}; expected {SCHEMA}"
        )
    try:
        if markdown:
            click.echo(frontier_markdown(results))
            return
        check_writable(run_dir / "frontier.html", "RUN_DIR")
        write_frontier_report(results, run_dir / "frontier.html")
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ForgetlensError(
            f"{run_dir / 'frontier.json'}: its fields do not fit together ({type(exc).__name__}: "
            f"{short_repr(first_line(exc))}); expected a frontier.json written by forgetlens frontier"
        ) from None
    click.echo(f"report: {run_dir / 'frontier.html'}")


def _one_line_warnings() -> None:
    """forgetlens's own warnings print as one ``warning: ...`` line (not Python's two-line format)."""
    import warnings

    from forgetlens.measure.benchmarks import BenchmarkWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, BenchmarkWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _user_error_lines(exc: Exception) -> list[str]:
    """What to print for a problem the user can fix: a ForgetlensError's own lines, or one line naming the file
    of an I/O or decoding error."""
    if isinstance(exc, ForgetlensError):
        return str(exc).splitlines()
    if isinstance(exc, UnicodeDecodeError):
        return [f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}); expected UTF-8"]
    assert isinstance(exc, OSError)
    where = f"{exc.filename}: " if exc.filename else ""
    return [f"{where}{exc.strerror or exc}".splitlines()[0]]


OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
"""Set to 1 unless ``--allow-download`` is given: the Hugging Face libraries then never look up a host."""


def _network_off_unless_allowed(argv: list[str]) -> None:
    """Offline by default: no hub lookups and no telemetry (TRL's and huggingface_hub's) unless the user passes
    ``--allow-download``.  Must run before transformers, TRL or huggingface_hub is imported: they read these once."""
    import os

    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # transformers' and the hub's bars: forgetlens shows its own
    os.environ["TQDM_DISABLE"] = "1"  # and the bars libraries draw with tqdm directly (transformers' GGUF reader)
    if "--allow-download" in argv:
        os.environ["FORGETLENS_ALLOW_DOWNLOAD"] = "1"  # models.loading.downloads_allowed, worker processes too
    else:
        os.environ.pop("FORGETLENS_ALLOW_DOWNLOAD", None)
        for key in OFFLINE_ENV:
            os.environ[key] = "1"


RESUMABLE = ("run", "frontier", "finetune", "pretrain-base")
"""Commands whose work an interrupt keeps and ``--resume`` continues."""


def _stop_cleanly_on_interrupt(args: list[str]) -> None:
    """Ctrl-C: stop at once with one line saying what is kept and the exact command that continues the work.

    Every file forgetlens writes is written to a temporary name and renamed into place (a checkpoint through its
    staging folder), so stopping between any two instructions leaves only whole files and leftovers the next
    start removes; worker processes end with this one (``pipeline/schedule.py``)."""
    import os
    import shlex
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    command = next((a for a in args if not a.startswith("-")), "")
    out = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--out"), None)

    def stop(signum, frame):
        from forgetlens.progress import stop_display

        stop_display()
        if command in RESUMABLE and out is not None:
            again = [a for a in args if a != "--overwrite"] + ([] if "--resume" in args else ["--resume"])
            line = (
                f"interrupted: the work finished so far is kept in {out}; continue it with: "
                f"forgetlens {shlex.join(again)}"
            )
        else:
            line = "interrupted: nothing half-written is left; run the command again to do it"
        sys.stderr.write(f"\n{line}\n")
        sys.stderr.flush()
        _end_resource_tracker()
        os._exit(130)

    signal.signal(signal.SIGINT, stop)


def _end_resource_tracker() -> None:
    """End multiprocessing's resource tracker with this process: left behind, it prints a warning about the worker
    pool's semaphores under the interrupt's one line (the semaphores go with the processes anyway)."""
    import os
    import signal
    from multiprocessing import resource_tracker

    pid = getattr(getattr(resource_tracker, "_resource_tracker", None), "_pid", None)
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, one-line errors and exit 2 for problems the user can fix.

    ``--debug`` anywhere on the command line shows the traceback of such a problem instead.
    """
    from forgetlens.utils import check_environment, silence_known_warnings

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if "--quiet" in args:  # anywhere on the command line: no progress display (warnings and errors still print)
        import os

        os.environ["FORGETLENS_QUIET"] = "1"
    args = [a for a in args if a not in ("--debug", "--quiet")]
    if argv is None:  # the command line itself (not a caller's own process): Ctrl-C stops it cleanly
        _stop_cleanly_on_interrupt(args)
    _network_off_unless_allowed(args)
    silence_known_warnings()
    _one_line_warnings()
    try:
        check_environment()
        cli.main(args=args, standalone_mode=False)
    except (ForgetlensError, OSError, UnicodeDecodeError) as exc:
        if debug:
            raise
        for line in _user_error_lines(exc):
            click.echo(f"error: {line}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
