"""Command-line options made from the option dataclasses, so that a flag's type, choices, default and help are the
field's own (``config/options.py``) and never written twice.

A flag stands for a field path of a config class (``steps``, ``rl.loss_type``).  Its value defaults to None,
meaning "the config's own default", which ``--help`` shows; :func:`apply_options` writes the given ones into a
config.  A ``bool`` field is a ``--x / --no-x`` pair, a ``list`` field a repeatable flag.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import click

from forgetlens.config.options import Options, deferred_validation
from forgetlens.errors import ForgetlensError

C = TypeVar("C", bound=Options)
F = TypeVar("F", bound=Callable[..., Any])


def _owner(cls: type[Options], path: str) -> tuple[type[Options], str]:
    """The class that holds the last field of ``path`` under ``cls``, and that field's name."""
    *sections, name = path.split(".")
    for section in sections:
        cls = typing.get_type_hints(cls)[section]
    return cls, name


def _field_default(owner: type[Options], name: str) -> Any:
    """The default of field ``name``, read from the field itself (no config is built)."""
    spec = {f.name: f for f in dataclasses.fields(typing.cast(Any, owner))}[name]
    if spec.default is not dataclasses.MISSING:
        return spec.default
    return spec.default_factory()  # type: ignore[operator]  # a field has one or the other


def _click_type(hint: Any) -> Any:
    """A click parameter type for a field's type hint (its ``Optional`` dropped; a ``Literal`` is a string,
    checked by :func:`_one_of`)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args and typing.get_origin(hint) not in (list, Literal):  # X | None
        return _click_type(args[0])
    return hint if hint in (int, float, str) else str


def _listed(item: type, flag: str) -> Callable[[Any, Any, Any], Any]:
    """A click callback making a repeatable flag's values a list of ``item`` (numbers may also come
    comma-separated, ``--lrs 1e-4,3e-4``), None when the flag was not given."""

    def parse(ctx: Any, param: Any, values: tuple[str, ...]) -> list | None:
        if not values:
            return None
        if item not in (int, float):
            return list(values)
        try:
            return [item(x) for value in values for x in value.split(",") if x.strip()]
        except ValueError:
            raise ForgetlensError(f"{flag}: expected comma-separated numbers, got {','.join(values)!r}") from None

    return parse


def _one_of(choices: tuple[str, ...], flag: str, what: str) -> Callable[[Any, Any, Any], Any]:
    """A click callback refusing a value outside ``choices`` in the house's one-line form."""

    def check(ctx: Any, param: Any, value: Any) -> Any:
        if value is not None and value not in choices:
            raise ForgetlensError(f"{flag}: unknown {what} {value!r}; expected one of {', '.join(choices)}")
        return value

    return check


SECTION_NOTES = {"rl": "RL: ", "preserve": "sft-preserve / rl-preserve: ", "monitor": "CircuitMonitor: "}
"""What a nested section's flags are for, put before the field's docstring in ``--help``."""


def param_name(path: str) -> str:
    """The Python name of the option for field ``path`` (``rl.loss_type`` -> ``rl__loss_type``)."""
    return path.replace(".", "__")


def field_option(
    cls: type[Options], path: str, flag: str | None = None, *, required: bool = False, note: str = ""
) -> Callable[[F], F]:
    """A click option for field ``path`` of ``cls``: ``--FIELD-NAME`` unless ``flag``; ``note`` is put before the
    field's docstring (e.g. which method the field is for)."""
    owner, name = _owner(cls, path)
    hint = typing.get_type_hints(owner)[name]
    doc = owner.field_docs()[name].replace("``", "`")
    default = _field_default(owner, name)
    flag = flag or "--" + name.replace("_", "-")
    if isinstance(default, list):  # as it is typed: 1e-4,3e-4
        default = ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in default) or None
    shown = "" if required or default is None else f" [default: {default}]"
    if not note and "." in path:  # a nested section's field: say whose
        note = SECTION_NOTES.get(path.split(".")[0], "")
    choices = tuple(str(a) for a in typing.get_args(hint)) if typing.get_origin(hint) is Literal else None
    if hint is bool:  # --x / --no-x; neither given: the config's own default
        return click.option(f"{flag}/--no-{flag[2:]}", param_name(path), default=None, help=f"{note}{doc}{shown}")
    listed = next((h for h in (hint, *typing.get_args(hint)) if typing.get_origin(h) is list), None)
    if listed is not None:  # repeatable, numbers also comma-separated; none given: the config's own default
        item = typing.get_args(listed)[0]
        return click.option(
            flag,
            param_name(path),
            multiple=True,
            required=required,
            callback=_listed(item, flag),
            help=f"{note}{doc}{' Comma-separated or repeated.' if item in (int, float) else ''}{shown}",
        )
    return click.option(
        flag,
        param_name(path),
        type=_click_type(hint),
        default=None,
        required=required,
        callback=_one_of(choices, flag, name.replace("_", " ")) if choices else None,
        help=f"{note}{doc}{' One of: ' + ', '.join(choices) + '.' if choices else ''}{shown}",
    )


def field_options(cls: type[Options], paths: dict[str, str | None]) -> Callable[[F], F]:
    """:func:`field_option` for every ``{path: flag or None}``, in that order on ``--help``."""

    def decorate(command: F) -> F:
        for path, flag in reversed(paths.items()):
            command = field_option(cls, path, flag)(command)
        return command

    return decorate


def apply_options(cfg: C, values: dict[str, Any]) -> C:
    """``cfg`` with every given (not None) value of ``{param_name: value}`` written into its field path; the result
    is not checked (the caller reports every problem at once, naming flags)."""
    with deferred_validation():
        for key, value in values.items():
            if value is not None:
                cfg = _replaced(cfg, key.split("__"), value)
    return cfg


def _replaced(obj: Any, path: list[str], value: Any) -> Any:
    head, *rest = path
    new = _replaced(getattr(obj, head), rest, value) if rest else value
    return dataclasses.replace(obj, **{head: new})


def refuse_problems(problems: list[str]) -> None:
    """Raise one ForgetlensError listing every ``field: what is wrong`` line of ``problems`` under its flag's name
    (``n_boot: ...`` -> ``--n-boot: ...``); nothing when there are none."""
    if problems:
        flags = [f"--{field.replace('_', '-')}:{rest}" for field, rest in (p.split(":", 1) for p in problems)]
        raise ForgetlensError("\n".join(flags))
