"""Talking to the installed ms-swift: find `swift`, validate argument names and values against its own
argument dataclasses, build argv lists and paste-able command lines, and run it streaming its output.

Argument names drift between ms-swift versions (3.x ``train_type`` is 4.x ``tuner_type``), and ms-swift itself
only rejects a wrong name after seconds of imports; checking here, against the installed classes, turns a typo
into an immediate error with the closest valid name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Mapping, Sequence

from plates.errors import UserError
from plates.io import progress
from plates.signals import deferred

# ms-swift 3.x names -> 4.x names. Applied only when the old name is not a field of the installed version and the
# new one is, so the table never overrides what the installed ms-swift really accepts.
RENAMED_ARGUMENTS = {
    "train_type": "tuner_type",
    "custom_register_path": "external_plugins",
    "use_liger": "use_liger_kernel",
    "gpu_memory_utilization": "vllm_gpu_memory_utilization",
    "tensor_parallel_size": "vllm_tensor_parallel_size",
    "pipeline_parallel_size": "vllm_pipeline_parallel_size",
    "max_model_len": "vllm_max_model_len",
    "limit_mm_per_prompt": "vllm_limit_mm_per_prompt",
    "enforce_eager": "vllm_enforce_eager",
    "enable_prefix_caching": "vllm_enable_prefix_caching",
    "max_num_seqs": "vllm_max_num_seqs",
}
# Renamed values: `--infer_backend pt` is `transformers` in 4.x.
RENAMED_VALUES = {("infer_backend", "pt"): "transformers"}

ARGUMENT_CLASSES = {
    "sft": "SftArguments",
    "rlhf": "RLHFArguments",
    "infer": "InferArguments",
    "export": "ExportArguments",
    "deploy": "DeployArguments",
}

# API_KEY, HF_TOKEN, hub_token, swanlab_secret, PASSWORD …; not TOKENIZERS_PARALLELISM or max_new_tokens.
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD)$|(^|_)(KEY|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(_|$)",
                         re.IGNORECASE)
REDACTED = "<redacted>"
# Inherited environment variables worth recording in a run manifest (always passed through redaction).
RELEVANT_ENV = re.compile(
    r"^(CUDA_|NPROC_PER_NODE$|NNODES$|NODE_RANK$|MASTER_|MAX_PIXELS$|MIN_PIXELS$|VIDEO_|FPS|IMAGE_|"
    r"ROOT_IMAGE_DIR$|HF_|MODELSCOPE_|SWIFT_|TORCH|PYTORCH_|OMP_|NCCL_|TOKENIZERS_|WANDB_|SWANLAB_|ASCEND_)")


def swift_command() -> list[str]:
    """The argv prefix that runs the installed ms-swift CLI: the `swift` script beside this Python (the
    virtualenv's), else the one on PATH, else ``python -m swift.cli.main``."""
    beside = Path(sys.executable).parent / "swift"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("swift")
    if found:
        return [found]
    try:
        importlib.metadata.version("ms-swift")
    except importlib.metadata.PackageNotFoundError:
        raise UserError("ms-swift is not installed (pip install 'ms-swift>=4.6,<4.7')") from None
    return [sys.executable, "-m", "swift.cli.main"]


@functools.lru_cache(maxsize=None)
def argument_fields(command: str) -> dict[str, dataclasses.Field]:
    """The installed ms-swift's argument fields for ``command`` (sft, rlhf, infer, export, deploy): its own
    dataclass, which already includes the Hugging Face ``Seq2SeqTrainingArguments`` fields for sft and rlhf."""
    if command not in ARGUMENT_CLASSES:
        raise ValueError(f"unknown ms-swift command {command!r}")
    arguments = quiet_import("swift.arguments")
    cls = getattr(arguments, ARGUMENT_CLASSES[command])
    return {field.name: field for field in dataclasses.fields(cls)}


def quiet_import(module: str):
    """Import an ms-swift module without its import-time INFO lines and library FutureWarnings, which would
    bury a `--dry-run`'s command line; ms-swift's own runs (subprocesses) keep their logging."""
    import importlib
    import warnings

    saved = os.environ.get("LOG_LEVEL")
    if saved is None:
        os.environ["LOG_LEVEL"] = "WARNING"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"cannot import ms-swift ({exc}); is it installed in this environment?") from None
    finally:
        if saved is None:
            os.environ.pop("LOG_LEVEL", None)


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def canonical_name(name: str, fields: Mapping[str, Any]) -> tuple[str, str | None]:
    """``(name the installed ms-swift accepts, note)``; a note says a 3.x name was translated.
    Raises UserError for an unknown name, suggesting the closest valid one."""
    key = name.strip().lstrip("-").replace("-", "_")
    if key in fields:
        return key, None
    renamed = RENAMED_ARGUMENTS.get(key)
    if renamed and renamed in fields:
        return renamed, f"`{key}` is called `{renamed}` in this ms-swift; using `{renamed}`"
    hint = suggest(key, fields)
    message = f"ms-swift does not know the argument `{key}`"
    raise UserError(message + (f"; did you mean `{hint}`?" if hint else ""))


# ---- values -------------------------------------------------------------------------------------------------

def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        return members[0] if len(members) == 1 else typing.Union[tuple(members)]
    return tp


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, typing.List, tuple, Sequence)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce_scalar(name: str, tp: Any, value: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise UserError(f"`{name}` takes true or false, not {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise UserError(f"`{name}` takes an integer, not {value!r}")
        try:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            return int(number)
        except (TypeError, ValueError):
            raise UserError(f"`{name}` takes an integer, not {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise UserError(f"`{name}` takes a number, not {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"`{name}` takes a number, not {value!r}") from None
    if typing.get_origin(tp) is typing.Literal:
        choices = typing.get_args(tp)
        text = value if isinstance(value, str) else json.dumps(value)
        if text not in [str(c) for c in choices]:
            hint = suggest(text, [str(c) for c in choices])
            raise UserError(f"`{name}` takes one of {', '.join(map(str, choices))}; not {value!r}"
                            + (f" (did you mean {hint}?)" if hint else ""))
        return text
    if tp is str:
        return value if isinstance(value, str) else _scalar_text(value)
    # dict | str, Union[...] and anything exotic: keep as given (dicts are rendered as JSON).
    return value


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def coerce_value(name: str, field: dataclasses.Field | None, value: Any, raw: str | None = None) -> Any:
    """Check and convert ``value`` to the field's type. ``raw`` is the text the user typed (for `--set`), used
    verbatim for string fields so ``model_name=1.10`` stays '1.10'. ``None`` means 'drop this key'."""
    if value is None:
        return None
    tp = _strip_optional(field.type) if field is not None else Any
    if isinstance(tp, str):  # postponed annotation we cannot resolve: pass through
        return value
    if _is_list(tp):
        (inner,) = typing.get_args(tp)[:1] or (str,)
        inner = _strip_optional(inner)
        if isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [raw if (raw is not None and inner is str) else value]
        if not items:
            raise UserError(f"`{name}` needs at least one value")
        return [_coerce_scalar(name, inner, item) for item in items]
    if raw is not None and tp is str:
        return raw
    result = _coerce_scalar(name, tp, value)
    renamed = RENAMED_VALUES.get((name, result)) if isinstance(result, str) else None
    return renamed or result


def parse_assignment(text: str) -> tuple[str, Any, str]:
    """``key=value`` from `--set` -> ``(key, YAML-parsed value, raw text)``."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set takes key=value, not {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value, raw


def parse_overrides(texts: Iterable[str] | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Every ``--set key=value`` of a command -> ``(values, raw texts)`` by key, ready for :func:`resolve_options`
    (the one place `--set` is parsed; train, infer, export and predict share it)."""
    values: dict[str, Any] = {}
    raw: dict[str, str] = {}
    for text in texts or []:
        key, value, raw_text = parse_assignment(text)
        values[key], raw[key] = value, raw_text
    return values, raw


def resolve_options(command: str, options: Mapping[str, Any], raw: Mapping[str, str] | None = None,
                    notes: list[str] | None = None) -> dict[str, Any]:
    """Validate names and values of ``options`` for ``swift <command>``; returns them under the installed names,
    coerced, without the keys set to None. 3.x names are translated (a note is appended to ``notes``)."""
    fields = argument_fields(command)
    raw = raw or {}
    resolved: dict[str, Any] = {}
    for name, value in options.items():
        key, note = canonical_name(name, fields)
        if note and notes is not None:
            notes.append(note)
        coerced = coerce_value(key, fields[key], value, raw.get(name))
        if coerced is None:
            resolved.pop(key, None)
        else:
            resolved[key] = coerced
    return resolved


def with_plugins(current: Any, *plugins: str) -> list[str]:
    """An ``external_plugins`` value (absent, one path or a list, as a preset or ``--set`` gives it) with
    ``plugins`` added after it, each once."""
    merged = [] if not current else [current] if isinstance(current, (str, os.PathLike)) else list(current)
    merged = [str(p) for p in merged]
    return merged + [p for p in plugins if p not in merged]


def options_to_argv(options: Mapping[str, Any]) -> list[str]:
    """``{"lora_rank": 8, "target_modules": ["all-linear"], "freeze_vit": False}`` ->
    ``["--lora_rank", "8", "--target_modules", "all-linear", "--freeze_vit", "false"]``."""
    argv: list[str] = []
    for key, value in options.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        if isinstance(value, (list, tuple)):
            argv.extend(_scalar_text(v) for v in value)
        else:
            argv.append(_scalar_text(value))
    return argv


def parse_gpus(text: str) -> list[str]:
    """``--gpus 0,1,2,3`` -> ``["0", "1", "2", "3"]`` (for CUDA_VISIBLE_DEVICES); train, infer and serve share it."""
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or not all(re.fullmatch(r"\d+", g) for g in gpus):
        raise UserError(f"--gpus takes comma-separated GPU indices like 0,1,2,3, not {text!r}")
    if len(set(gpus)) != len(gpus):
        raise UserError(f"--gpus lists a GPU twice: {text!r}")
    return gpus


# ---- environment, secrets, display ----------------------------------------------------------------------------

def is_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if is_secret(k) else str(v)) for k, v in env.items()}


def redact_argv(argv: Sequence[str]) -> list[str]:
    """Hide the values of options whose names look secret (``--hub_token X`` -> ``--hub_token <redacted>``,
    ``--hub_token=X`` -> ``--hub_token=<redacted>``)."""
    out: list[str] = []
    hiding = False
    for item in argv:
        if item.startswith("--") and "=" in item:
            name, _, _ = item.partition("=")
            out.append(f"{name}={REDACTED}" if is_secret(name) else item)
            hiding = False
        elif item.startswith("--"):
            hiding = is_secret(item)
            out.append(item)
        else:
            out.append(REDACTED if hiding else item)
    return out


def relevant_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    # Secret-named variables are listed (redacted): knowing one was set helps explain a run.
    return redact_env({k: v for k, v in sorted(environ.items()) if RELEVANT_ENV.match(k) or is_secret(k)})


def format_command(argv: Sequence[str], env: Mapping[str, str] | None = None, multiline: bool = True) -> str:
    """A command line a user can paste into a POSIX shell: ``KEY=value … swift sft --a b``, every word quoted."""
    words = [f"{k}={shlex.quote(str(v))}" for k, v in (env or {}).items()]
    words += [shlex.quote(str(a)) for a in argv]
    if not multiline:
        return " ".join(words)
    lines, current = [], []
    for word in words:
        if word.startswith("--") and current:
            lines.append(" ".join(current))
            current = []
        current.append(word)
        if "=" in word and not word.startswith("-") and word.split("=", 1)[0].isidentifier():
            lines.append(" ".join(current))
            current = []
    if current:
        lines.append(" ".join(current))
    return " \\\n  ".join(lines)


def package_versions(names: Iterable[str] = ("plates", "ms-swift", "transformers", "peft", "torch", "accelerate",
                                             "deepspeed", "qwen-vl-utils", "vllm", "lmdeploy", "swanlab",
                                             "tensorboard")) -> dict[str, str]:
    import platform

    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


# ---- running --------------------------------------------------------------------------------------------------

def run_streaming(argv: Sequence[str], env: Mapping[str, str] | None = None, *,
                  on_line: Callable[[str], None] | None = None, cwd: str | os.PathLike | None = None,
                  echo: bool = True, log: BinaryIO | None = None) -> int:
    """Run ``argv`` (never through a shell) with ``env`` added to this environment, copying its output to our
    stdout as it comes (progress bars included) when ``echo``, to the binary file ``log`` when given, and handing
    each complete line to ``on_line``. Returns the child's exit code.

    The child runs in its own process group: `swift` starts the real work as a grandchild (``python sft.py``,
    torchrun and its ranks) and dies on SIGTERM without passing it on, so a signal to the child alone would
    orphan them. Ctrl-C, SIGTERM and SIGHUP here (KeyboardInterrupt, :class:`plates.errors.Terminated`) are
    sent to the whole group, which gets 30 s to stop before it is killed; the exception then goes on."""
    full_env = dict(os.environ)
    full_env.update({k: str(v) for k, v in (env or {}).items()})
    full_env.setdefault("PYTHONUNBUFFERED", "1")

    proc = None
    try:
        with deferred():  # a signal between the start and `proc = ...` would leave the child unknown
            proc = subprocess.Popen(list(argv), env=full_env, cwd=cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
        pending = b""
        assert proc.stdout is not None
        while True:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            if log is not None:
                log.write(chunk)
            if echo:
                if out is not None:
                    out.write(chunk)
                    out.flush()
                else:
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
            if on_line is not None:
                pending += chunk
                *lines, pending = re.split(rb"\r\n|\n|\r", pending)
                for line in lines:
                    on_line(line.decode("utf-8", "replace"))
        if on_line is not None and pending:
            on_line(pending.decode("utf-8", "replace"))
        return proc.wait()
    except FileNotFoundError:
        if proc is None:
            raise UserError(f"cannot run {argv[0]!r}: not found") from None
        raise
    except KeyboardInterrupt as exc:
        if proc is not None:
            stop_group(proc, getattr(exc, "signum", signal.SIGINT))
        raise
    finally:
        if proc is not None:
            if proc.poll() is None:
                stop_group(proc, signal.SIGKILL, grace=0)
            if proc.stdout is not None:
                proc.stdout.close()


def stop_group(proc: subprocess.Popen, sig: int, grace: float = 30.0) -> None:
    """Send ``sig`` to ``proc``'s process group (it leads one, see :func:`run_streaming`), wait up to ``grace``
    seconds for ``proc`` to end, then kill whatever is left of the group, grandchildren included."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    if grace:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# ---- quiet runs: plates' own progress bar, ms-swift's full output in a log file --------------------------------

# One fragment of a tqdm bar ('Train:  20%|██   | 1/5 [00:00<00:02, 1.50it/s]'); swift infer's bar has no description.
_BAR = re.compile(r"^(?P<desc>[^|]*?):?\s*(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*\[")
_LOG_DICT = re.compile(r"\{'(?:loss|eval_loss|train_runtime)':.*\}")


class SwiftProgress:
    """Follows one of ms-swift's tqdm bars (chosen by its description: ``Train`` for sft, ``""`` for infer) and
    its training log dicts, shown as a single plates bar: step/total, ETA and the latest loss. The losses seen are
    kept for the closing summary."""

    def __init__(self, bar: str, desc: str, unit: str = "step"):
        self.bar, self.desc, self.unit = bar, desc, unit
        self.losses: list[float] = []
        self.step = 0
        self.total: int | None = None
        self.visible = True  # False while ms-swift's own output streams to the terminal (-v)
        self._shown = None

    def feed(self, line: str) -> None:
        found = _LOG_DICT.search(line)
        if found:
            self._log_dict(found.group(0))
        match = _BAR.match(line)
        if match and match["desc"].strip() == self.bar:
            self._move(int(match["n"]), int(match["total"]))

    def _log_dict(self, text: str) -> None:
        import ast

        try:
            values = ast.literal_eval(text)
            loss = float(values["loss"]) if "loss" in values else None
        except (ValueError, SyntaxError, TypeError, KeyError):
            return
        if loss is not None:
            self.losses.append(loss)
            if self._shown is not None:
                self._shown.set_postfix_str(f"loss {loss:.4g}", refresh=False)

    def _move(self, step: int, total: int) -> None:
        if total != self.total:
            self.close()
        self.step, self.total = step, total
        if not self.visible:
            return
        if self._shown is None:
            self._shown = progress(total=total, desc=self.desc, unit=self.unit)
            if self.losses:
                self._shown.set_postfix_str(f"loss {self.losses[-1]:.4g}", refresh=False)
        if step > self._shown.n:
            self._shown.update(step - self._shown.n)

    def close(self) -> None:
        if self._shown is not None:
            self._shown.close()
            self._shown = None


@dataclasses.dataclass
class SwiftRun:
    """What a quiet ms-swift run left: its exit code, full log, wall time and the progress it reported."""

    code: int
    log_path: Path
    seconds: float
    losses: list[float]
    steps: int
    total: int | None


def failure_excerpt(lines: Sequence[str], limit: int = 12) -> list[str]:
    """The lines that explain a failed run: the innermost frame and the exception of the last traceback, else the
    last lines that are not progress bars."""
    meaningful = [line.rstrip() for line in lines if line.strip() and not _BAR.match(line)]
    starts = [i for i, line in enumerate(meaningful) if line.startswith("Traceback (most recent call last)")]
    if starts:
        block = meaningful[starts[-1]:]
        frames = [i for i, line in enumerate(block) if line.lstrip().startswith('File "')]
        return block[frames[-1] if frames else 0:][-limit:]
    return meaningful[-limit:]


def run_swift(argv: Sequence[str], env: Mapping[str, str] | None = None, *, log_path: str | os.PathLike,
              verbose: bool = False, progress: SwiftProgress | None = None,
              on_line: Callable[[str], None] | None = None, cwd: str | os.PathLike | None = None,
              who: str = "plates", log_hint: bool = True) -> SwiftRun:
    """Run an ms-swift command the plates way: its full output goes to ``log_path`` (after a header with the
    redacted command line) and, with ``verbose``, to the terminal as well; otherwise the terminal shows only
    ``progress`` (one bar) and, when ms-swift fails, the exception it died of and where the log is.
    ``who`` prefixes plates' own lines ('plates train'); ``log_hint=False`` leaves naming the log after a failure
    to the caller (train moves it into the run folder first)."""
    import collections
    import time

    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: collections.deque[str] = collections.deque(maxlen=400)
    tracker = progress or SwiftProgress(bar="\0", desc="")
    tracker.visible = not verbose

    def line(text: str) -> None:
        tail.append(text)
        tracker.feed(text)
        if on_line is not None:
            on_line(text)

    if not verbose:
        print(f"{who}: running ms-swift quietly; full output in {log_path} (-v shows it here)", file=sys.stderr,
              flush=True)
    started = time.monotonic()
    with open(log_path, "ab") as log:
        header = format_command(redact_argv(list(argv)), redact_env(dict(env or {})), multiline=False)
        log.write(f"$ {header}\n".encode("utf-8"))
        log.flush()
        try:
            code = run_streaming(argv, env, on_line=line, cwd=cwd, echo=verbose, log=log)
        finally:
            tracker.close()
    seconds = time.monotonic() - started
    if code != 0 and not verbose:
        excerpt = failure_excerpt(tail)
        print(f"{who}: ms-swift failed (exit {code}); the end of its output:", file=sys.stderr)
        for text in excerpt:
            print(f"  | {text[:400]}", file=sys.stderr)
        if log_hint:
            print(f"{who}: full log: {log_path}", file=sys.stderr)
    return SwiftRun(code=code, log_path=log_path, seconds=seconds, losses=list(tracker.losses),
                    steps=tracker.step, total=tracker.total)
