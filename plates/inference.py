"""The inference settings `plates infer`, `predict`, `serve` and `export --verify` share, declared once.

Why one object: the same eleven options (what answers, how it decodes, its caps, the GPUs, `--set`) used to be
declared in up to five parsers and travel as a dozen keyword arguments, so a new option meant five edits and a
default could drift between commands. :class:`InferenceSettings` owns their flags, defaults and help;
``add_arguments(parser)`` puts them on a parser, ``from_args(args)`` builds the object, and the stages pass it on
whole (to :func:`plates.swift_infer.build_infer_command`, :func:`plates.serve.build_serve_command`,
:func:`plates.engine_answers.prepare_engine`).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from plates.decoding import DEFAULT_MODE, MODES
from plates.outputs import input_path

BACKENDS = {"pt": "transformers", "transformers": "transformers", "vllm": "vllm", "lmdeploy": "lmdeploy",
            "sglang": "sglang"}
DEFAULT_MAX_NEW_TOKENS = 1024
ALL_OPTIONS = ("source", "backend", "decoding", "max_pixels", "max_new_tokens", "batch_size", "template", "gpus",
               "overrides", "logprobs")
SOURCE_HELP = {
    "adapters": "LoRA checkpoint from `plates train` (checkpoint-N, or its run folder for the last checkpoint)",
    "model": "a model without adapters (hub id or folder): a `plates export` merged model, or the base model "
             "for a before/after comparison",
}


@dataclass
class InferenceSettings:
    """What decides how a model answers: the checkpoint or model, the engine, decoding, caps, GPUs and any other
    ms-swift argument (``overrides``, ``KEY=VALUE`` texts as given to ``--set``)."""

    adapters: str | None = None
    model: str | None = None
    backend: str = "transformers"
    decoding: str = DEFAULT_MODE
    max_pixels: int | None = None
    max_new_tokens: int | None = DEFAULT_MAX_NEW_TOKENS
    batch_size: int | None = None
    template: str | None = None
    gpus: str | None = None
    overrides: list[str] = field(default_factory=list)
    logprobs: bool = False

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def of(cls, settings: "InferenceSettings | None" = None, **values: Any) -> "InferenceSettings":
        """``settings`` with ``values`` (field names) replaced; a fresh object from ``values`` when None."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise TypeError(f"unknown inference setting(s): {', '.join(unknown)}")
        values = {k: (list(v or []) if k == "overrides" else v) for k, v in values.items()}
        return dataclasses.replace(settings, **values) if settings is not None else cls(**values)

    def replace(self, **values: Any) -> "InferenceSettings":
        return type(self).of(self, **values)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, *, command: str = "infer",
                      max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, source_required: bool = True,
                      include: Iterable[str] = ALL_OPTIONS, unit: str = "samples", purpose: str = "",
                      helps: Mapping[str, str] | None = None) -> Any:
        """Add the inference flags to ``parser``: ``command`` is the ms-swift command `--set` checks against
        (``infer`` or ``deploy``), ``max_new_tokens`` the default answer cap, ``include`` a subset of
        :data:`ALL_OPTIONS`, ``unit`` what one forward pass batches ('images', 'requests'), ``purpose`` a
        suffix for the help ('for --verify'), ``helps`` a command's own help for an option (by dest name).
        Returns the --adapters/--model group (None without "source"), for a command that adds a third source."""
        include = set(include)
        source = None
        unknown = include - set(ALL_OPTIONS)
        if unknown:
            raise ValueError(f"unknown inference options: {sorted(unknown)}")
        helps = {**SOURCE_HELP, "gpus": "GPUs to use, e.g. 0 (sets CUDA_VISIBLE_DEVICES)", **(helps or {})}
        if "source" in include:
            source = parser.add_mutually_exclusive_group(required=source_required)
            source.add_argument("--adapters", help=helps["adapters"], type=input_path())
            source.add_argument("--model", help=helps["model"], type=input_path())
        if "backend" in include:
            parser.add_argument("--backend", default="transformers", choices=sorted(BACKENDS),
                                help="inference engine (pt = transformers; vllm needs a merged model when the "
                                     "vision tower was trained)")
        if "decoding" in include:
            parser.add_argument("--decoding", default=DEFAULT_MODE, choices=MODES,
                                help=f"schema (default): every answer valid against eval/answer.schema.json by "
                                     f"construction (xgrammar for transformers, a regex for vllm); free: "
                                     f"unconstrained{purpose}")
        if "max_pixels" in include:
            parser.add_argument("--max-pixels", type=int,
                                help="image pixel cap; default: what the run trained with")
        if "max_new_tokens" in include:
            parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens,
                                help=f"answer length cap in tokens (default {max_new_tokens}){purpose}")
        if "batch_size" in include:
            parser.add_argument("--batch-size", type=int, help=f"{unit} per forward pass (max_batch_size)")
        if "template" in include:
            parser.add_argument("--template",
                                help="ms-swift template, e.g. qwen2_5_vl (needed for some local models)")
        if "gpus" in include:
            parser.add_argument("--gpus", help=helps["gpus"])
        if "overrides" in include:
            parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                                help=f"any other `swift {command}` argument, checked against the installed ms-swift")
        if "logprobs" in include:
            parser.add_argument("--logprobs", action="store_true",
                                help="keep each generated token's log-probability (ms-swift --logprobs true): "
                                     "`plates eval` reports per-field confidence and risk–coverage, `plates "
                                     "predict` writes a per-field confidence (for `plates audit`)")
        return source

    @classmethod
    def from_args(cls, args: argparse.Namespace, **defaults: Any) -> "InferenceSettings":
        """The settings a parsed command line holds (options a parser did not declare keep ``defaults``, else
        the class defaults)."""
        values = {name: getattr(args, name) for name in cls.names() if hasattr(args, name)}
        return cls.of(**{**defaults, **values})

    @property
    def swift_backend(self) -> str:
        """ms-swift's name for the engine (``pt`` is now ``transformers``); the name as given when unknown."""
        return BACKENDS.get(self.backend, self.backend)
