"""Teacher backends: what `plates teach` needs from a teacher, the options each backend declares, and the
registry of backends by name.

A backend is a :class:`TeacherBackend` subclass in a module of its own, listed in :data:`BACKENDS` as
``name -> "module:Class"``. This module imports no backend module: an entry is imported when `plates teach`
builds its command line (each backend module keeps heavy imports inside functions) or when it is chosen, so a
backend module imports the base class from here without an import circle, and a new backend is one new file
plus one line in :data:`BACKENDS` (CONTRIBUTING.md, "Add a teacher backend").

Each backend declares its own flags as the fields of its ``Options`` dataclass (:func:`option`), in the spirit
of ``llm``'s per-model options: `plates teach` shows them in one argument group per backend, hands the chosen
backend its ``Options`` and refuses, in one line, a flag that belongs only to another backend.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from typing import Any, Callable

from plates.chat_client import Completion
from plates.errors import UserError
from plates.teaching.prompts import Prompts, Request

BACKENDS: dict[str, str | type[TeacherBackend]] = {
    "openai": "plates.teaching.backends.openai:OpenAIBackend",
    "template": "plates.teaching.backends.template:TemplateBackend",
}
DEFAULT_BACKEND = "template"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def option(default: Any = None, *, help: str, type: Callable[[str], Any] | None = None, metavar: str | None = None,
           append: bool = False) -> Any:
    """One field of a backend's ``Options``: the flag is ``--`` plus the field name with dashes (``base_url``
    -> ``--base-url``); ``append`` makes a repeatable flag whose value is a list."""
    metadata = {"help": help, "type": type, "metavar": metavar, "action": "append" if append else None}
    if append:
        return dataclasses.field(default_factory=list, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(field: dataclasses.Field) -> str:
    return "--" + field.name.replace("_", "-")


class TeacherBackend:
    """What `plates teach` needs from a teacher: a ``name`` (the ``--backend`` value, its key in
    :data:`BACKENDS`), a one-line ``help``, its ``Options`` (a dataclass of :func:`option` fields, one flag
    each), ``from_options`` to build one, the ``model`` it answers as, and ``complete``, which writes the text
    for one :class:`~plates.teaching.prompts.Request` (raising :class:`plates.chat_client.RequestFailed` for a
    request that failed for good). ``complete`` is called from several threads."""

    name: str = ""
    help: str = ""
    model: str = ""
    counts_tokens = True  # the summary reports token usage

    @dataclasses.dataclass(frozen=True)
    class Options:
        """No options of its own."""

    @classmethod
    def from_options(cls, options: Any, prompts: Prompts) -> TeacherBackend:
        """Build the backend from its ``Options`` (the flags given, defaults for the rest); a missing or
        inconsistent option is a UserError."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """Part of every output's resume key: change it when the same request would get a different text."""
        return self.model

    def resolve_model(self) -> str:
        """The model name recorded in each output line (called once before the first request)."""
        return self.model

    def complete(self, request: Request) -> Completion:
        raise NotImplementedError


def register_backend(name: str, target: str | type[TeacherBackend]) -> None:
    """Make a backend available as ``plates teach --backend NAME``: ``target`` is ``"module:Class"`` (imported
    when needed) or the class itself."""
    if not name or name in BACKENDS:
        raise ValueError(f"a teacher backend needs a unique name, not {name!r}")
    BACKENDS[name] = target


def backend_class(name: str) -> type[TeacherBackend]:
    """The class registered as ``name``, imported on first use."""
    target = BACKENDS.get(name)
    if target is None:
        raise UserError(f"unknown teacher backend {name!r}; choose from {', '.join(sorted(BACKENDS))}")
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
    if target.name != name or not dataclasses.is_dataclass(target.Options):
        raise ValueError(f"teacher backend {name!r}: {target.__name__} must have name = {name!r} and a dataclass "
                         "Options")
    return target


def _argument(field: dataclasses.Field) -> dict[str, Any]:
    spec = {"help": field.metadata.get("help"), "type": field.metadata.get("type"),
            "metavar": field.metadata.get("metavar"), "action": field.metadata.get("action")}
    return {k: v for k, v in spec.items() if v is not None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and every registered backend's flags, one argument group per backend. A flag's value is
    left out of the parsed arguments unless it is given, so :func:`make_backend` can tell given from default."""
    classes = {name: backend_class(name) for name in sorted(BACKENDS)}
    parser.add_argument("--backend", choices=sorted(classes), default=DEFAULT_BACKEND,
                        help="; ".join(f"{name}: {cls.help}" for name, cls in classes.items()))
    declared: dict[str, dict[str, Any]] = {}
    for name, cls in classes.items():
        fields = dataclasses.fields(cls.Options)
        group = parser.add_argument_group(f"--backend {name}") if fields else None
        for field in fields:
            spec = _argument(field)
            if field.name in declared:  # two backends share a flag: it must parse alike for both (shown once)
                if {k: v for k, v in declared[field.name].items() if k != "help"} != \
                        {k: v for k, v in spec.items() if k != "help"}:
                    raise ValueError(f"teacher backends declare {flag_of(field)} differently")
                continue
            declared[field.name] = spec
            group.add_argument(flag_of(field), dest=field.name, default=argparse.SUPPRESS, **spec)


def given_options(args: argparse.Namespace, cls: type[TeacherBackend]) -> Any:
    """``cls.Options`` from the flags given on the command line (the declared defaults for the others)."""
    names = [f.name for f in dataclasses.fields(cls.Options)]
    return cls.Options(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def refuse_foreign_flags(args: argparse.Namespace, chosen: type[TeacherBackend]) -> None:
    """A flag given that only other backends declare is a one-line UserError naming them, never dropped."""
    own = {f.name for f in dataclasses.fields(chosen.Options)}
    foreign: dict[str, list[str]] = {}
    for name in sorted(BACKENDS):
        if name == chosen.name:
            continue
        for field in dataclasses.fields(backend_class(name).Options):
            if field.name not in own and hasattr(args, field.name):
                foreign.setdefault(flag_of(field), []).append(name)
    if foreign:
        flags = list(foreign)
        owners = sorted({owner for names in foreign.values() for owner in names})
        what = "is an option" if len(flags) == 1 else "are options"
        raise UserError(f"{' and '.join(flags)} {what} of --backend {' / '.join(owners)}, "
                        f"not used by --backend {chosen.name}")


def make_backend(args: argparse.Namespace, prompts: Prompts) -> TeacherBackend:
    """The backend ``args.backend`` names, built from the flags given for it."""
    cls = backend_class(args.backend)
    refuse_foreign_flags(args, cls)
    return cls.from_options(given_options(args, cls), prompts)
