"""Options from YAML: a study config file read safely, checked against the dataclasses' fields and types, and the
differences between the options a run started with and those it is resumed with."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TypeVar

from forgetlens.artefacts import read_json, record_field
from forgetlens.config.options import DBMConfig, FrontierConfig, OwnCircuitsConfig, StudyConfig, deferred_validation
from forgetlens.errors import ForgetlensError
from forgetlens.utils import short_repr

T = TypeVar("T")


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_value(value, hint, key: str, errors: list[str]):
    """``value`` converted to ``hint`` (a dataclass, list, dict, optional or scalar), or None with an error."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:  # the type here; which values are allowed is problems()'s to say, with the set
        return _check_value(value, type(args[0]), key, errors)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_value(value, inner, key, errors)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping, got {short_repr(value)}")
            return None
        return _from_mapping(hint, value, key + ".", errors)
    if origin is list:
        if not isinstance(value, list):
            errors.append(f"{key}: expected a list of {_type_name(args[0])}, got {short_repr(value)}")
            return None
        return [_check_value(v, args[0], f"{key}[{i}]", errors) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping, got {short_repr(value)}")
            return None
        return {str(k): _check_value(v, args[1], f"{key}.{k}", errors) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        errors.append(f"{key}: expected {_type_name(hint)}, got {short_repr(value)}")
        return None
    return value


def _from_mapping(cls, data: dict, prefix: str, errors: list[str], default=None):
    """``default`` (``cls()`` if None) with the keys of ``data`` replaced; a nested section starts from the
    enclosing default's value, so ``finetune: {kl_coef: 0.2}`` keeps StudyConfig's own finetune defaults."""
    import typing

    default = cls() if default is None else default
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            errors.append(f"{prefix}{key}: unknown key; known: {', '.join(sorted(names))}")
    values = {}
    for k, v in data.items():
        if k not in names:
            continue
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
            values[k] = _from_mapping(hints[k], v, prefix + k + ".", errors, getattr(default, k))
        else:
            values[k] = _check_value(v, hints[k], prefix + k, errors)
    return dataclasses.replace(default, **{k: v for k, v in values.items() if v is not None or data[k] is None})


def config_from_mapping(
    cls: type[T], data: dict, source: str, semantic_check: Callable[[T], list[str]] | None = None
) -> T:
    """Build dataclass ``cls`` from nested ``data``; every problem is reported, one per line.

    Unknown keys and wrong types are collected first (a bad value falls back to its default), then
    ``semantic_check(cfg)`` (returning a list of problems) runs on the result, so one pass lists them all.
    """
    errors: list[str] = []
    if not isinstance(data, dict):
        raise ForgetlensError(f"{source}: expected a mapping of options at the top level")
    with deferred_validation():  # every problem is listed below, not the first one raised while building
        cfg = _from_mapping(cls, data, "", errors)
        if semantic_check is not None:
            errors += semantic_check(cfg)
    if errors:
        raise ForgetlensError("\n".join(f"{source}: {e}" for e in errors))
    return cfg


OPTIONS_ADDED_LATER: dict[str, object] = {
    "rl.shared_prompt_scoring": False,
    "rl.shared_prefill_generation": False,
    "rl.oversample": 1,
    "anatomy.enabled": False,
    "anatomy.metric": "logp_answer",
    "anatomy.min_block": 4,
    "anatomy.n_exact_heads": 4,
    "init_from": None,
    "warmup_steps": 0,
    "prior_per_prompt": False,
    "keep_optimizer": True,  # runs made before the option kept their optimizer state
    "rl_from_sft": False,
    "lora_rank": None,  # a frontier arm's adapter rank: full fine-tuning before it existed
    **{f"discovery.dbm.{f.name}": f.default for f in fields(DBMConfig)},
    **{f"own_circuits.{f.name}": f.default for f in fields(OwnCircuitsConfig) if f.name != "methods"},
    "own_circuits.methods": ["dbm"],
}
"""Options added after runs were first recorded, with the value a run whose record lacks the key ran with
(before ``rl.shared_prompt_scoring`` existed, RL used TRL's scoring). Resuming such a run compares against it."""


def config_differences(started: dict, now: dict, prefix: str = "") -> list[str]:
    """``key: STARTED -> NOW`` for every option that differs between two ``dataclasses.asdict`` configs; a key
    the started run's record lacks counts as its :data:`OPTIONS_ADDED_LATER` value."""
    out = []
    for key in sorted(set(started) | set(now)):
        added = [value for name, value in OPTIONS_ADDED_LATER.items() if f".{prefix}{key}".endswith(f".{name}")]
        a, b = started.get(key, added[0] if added else "(absent)"), now.get(key, "(absent)")
        if key not in started and isinstance(b, dict):  # a whole section added later: compare key by key
            a = {}
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif _dicts(a) and _dicts(b) and len(a) == len(b):  # a list of sections (a frontier's arms): item by item
            for i, (item_a, item_b) in enumerate(zip(a, b, strict=True)):
                out += config_differences(item_a, item_b, f"{prefix}{key}[{i}].")
        elif a != b:
            out.append(f"{prefix}{key}: {short_repr(a)} when started, {short_repr(b)} now")
    return out


def _dicts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def load_study_config(path: Path | str, check_paths: bool = True) -> StudyConfig:
    """Read and validate a study YAML file; every problem is reported, one line each, naming the key.

    ``check_paths=False`` skips checking that ``data`` exists (``forgetlens plan`` needs no data).
    """
    return load_options_file(StudyConfig, path, lambda cfg: cfg.problems(check_paths=check_paths))


def load_frontier_config(path: Path | str) -> FrontierConfig:
    """Read and validate a frontier YAML file (``forgetlens frontier``), every problem one line naming its key."""
    return load_options_file(FrontierConfig, path, lambda cfg: cfg.problems())


def load_options_file(cls: type[T], path: Path | str, semantic_check: Callable[[T], list[str]]) -> T:
    """Options ``cls`` from a YAML file, read safely; every problem (``semantic_check``'s too) one line each."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ForgetlensError(f"--config: {path} does not exist")
    try:
        data = _parse_yaml(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ForgetlensError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected a YAML file"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ForgetlensError(f"{where}: not valid YAML ({problem})") from None
    if data is None:
        raise ForgetlensError(f"{path}: the file is empty; expected options (see configs/embedded-study.yaml)")
    return config_from_mapping(cls, data, str(path), semantic_check)


MAX_YAML_DEPTH = 32
"""Deepest nesting of lists and mappings a config may have (the study's options are 3 deep)."""


def _parse_yaml(text: str):
    """YAML's safe subset, without aliases (``*name`` repeats a node; a few hundred bytes of nested aliases
    expand to gigabytes) and at most :data:`MAX_YAML_DEPTH` levels deep; either is a ``yaml.YAMLError`` at its
    line."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    "YAML aliases (*name) are not accepted in a config; write the value out",
                    event.start_mark,
                )
            self.depth += 1
            if self.depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark
                )
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    loader = Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def check_resumable(record: Path, cfg: StudyConfig | FrontierConfig, free: tuple[str, ...] = ()) -> None:
    """Refuse to resume the run recorded in ``record`` (its ``config`` as started) with ``cfg`` unless only its
    ``seeds`` grew and the top-level sections ``free`` changed (they are read again, nothing they made is reused):
    one ForgetlensError naming every option that changed, or the seeds dropped."""
    stored = dict(record_field(read_json(record), "config", record))
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))
    started_seeds = stored.pop("seeds", list(cfg.seeds))
    for key in ("seeds", *free):
        stored.pop(key, None)
        now.pop(key, None)
    changed = config_differences(stored, now)
    if changed:
        raise ForgetlensError(f"{record}: --resume with options the run was not started with: {'; '.join(changed)}")
    if not set(started_seeds) <= set(cfg.seeds):
        raise ForgetlensError(
            f"{record}: --resume may add seeds, not drop them: started with seeds {started_seeds}, now "
            f"{list(cfg.seeds)}"
        )
