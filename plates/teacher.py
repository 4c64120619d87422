"""Teacher backends for `plates teach`: prompts as versioned data, an OpenAI-compatible client, a template writer.

* :class:`Prompts` — ``prompts/v1/prompts.yaml`` (the describe / caption / fuse / reason prompts and the caption
  question pool, in Chinese like the seed) and ``template.yaml`` (phrase pools of the offline writer). A folder
  given with ``--prompts`` overrides them. Each mode's prompt text is hashed into the resume key, so an edited
  prompt is never mistaken for finished work.
* :class:`OpenAIBackend` — any chat-completions endpoint (GPT-4o, DashScope, ModelScope API-Inference, vLLM,
  ``swift deploy``) through the official ``openai`` client. Images go as base64 data URLs (``swift deploy``
  rejects ``file://`` paths with ':'), shrunk to a pixel budget first. Several base URLs are used round-robin.
  Retries are ours, not the client's: exponential backoff with jitter on 429, 5xx, timeouts and dropped
  connections, honouring ``Retry-After``; a shared limiter keeps requests under ``--rpm``.
* :class:`TemplateBackend` (in :mod:`plates.template_teacher`) — deterministic, offline, label-only texts (backend
  ``template``, model ``template-v1``): the demo and tests run without any model, and the output says so.

Backends subclass :class:`TeacherBackend` and register by name (:func:`register_backend`); ``plates teach
--backend`` offers what :data:`BACKENDS` holds (CONTRIBUTING.md, "Add a teacher backend").
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import itertools
import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from plates.errors import UserError
from plates import resources
from plates.labels import (
    PLATE_FIELDS, PLATE_GROUP, PLATE_NUMBER, UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP, answer_from_labels,
)

MODES = ("describe", "caption", "fuse", "reason")
IMAGE_MODES = ("describe", "caption", "reason")
DEFAULT_MAX_PIXELS = 1003520  # the seed's MAX_PIXELS (1280 * 28 * 28)
RETRY_AFTER_CAP = 600.0  # seconds: a longer Retry-After is honoured only up to this
# A reply longer than this many characters per --max-tokens token (and at least MIN_REPLY_CHARS) means the
# server ignored the token limit: it is a failed request, never stored whole.
REPLY_CHARS_PER_TOKEN = 16
MIN_REPLY_CHARS = 4096


def default_prompts_dir() -> Path:
    return resources.prompts_dir("v1")


def digest(obj: Any, length: int = 16) -> str:
    data = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:length]


@dataclass(frozen=True)
class Prompts:
    """The prompt set of one version, loaded from a prompts folder."""

    version: str
    system: str
    modes: dict[str, dict[str, Any]]
    questions: tuple[str, ...]
    max_chars: dict[str, int]
    template: dict[str, Any]
    source: Path

    def digest(self, mode: str) -> str:
        """Fingerprint of everything that shapes a ``mode`` request (part of the resume key)."""
        uses_pool = mode in ("describe", "caption")
        return digest([self.version, self.system, self.modes[mode], self.max_chars.get(mode),
                       list(self.questions) if uses_pool else None])

    def question_for(self, mode: str, seed: str) -> str | None:
        """The question a ``mode`` output answers in training: drawn from the pool, fixed per image."""
        if mode == "reason":
            return None
        pool = self.questions
        return pool[int(hashlib.sha256(f"{mode}:{seed}".encode()).hexdigest(), 16) % len(pool)]


def load_prompts(directory: str | Path | None = None) -> Prompts:
    """Read ``prompts.yaml`` and ``template.yaml`` from a prompts folder; a malformed one is a user error."""
    folder = Path(directory) if directory else default_prompts_dir()
    prompts_file = folder / "prompts.yaml"
    template_file = folder / "template.yaml"
    for path in (prompts_file, template_file):
        if not path.is_file():
            raise UserError(f"{path}: no such file (a prompts folder holds prompts.yaml and template.yaml)")
    try:
        data = yaml.safe_load(prompts_file.read_text(encoding="utf-8")) or {}
        template = yaml.safe_load(template_file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{folder}: not valid YAML ({exc})") from None
    problems = [f"'{m}.prompt'" for m in MODES if not isinstance((data.get(m) or {}).get("prompt"), str)]
    questions = (data.get("caption") or {}).get("questions") or []
    if not questions or not all(isinstance(q, str) and q.strip() for q in questions):
        problems.append("'caption.questions' (a list of questions)")
    if not data.get("version"):
        problems.append("'version'")
    if not isinstance(template.get("model"), str):
        problems.append(f"{template_file.name}: 'model'")
    if problems:
        raise UserError(f"{prompts_file}: missing or invalid {', '.join(problems)}")
    return Prompts(
        version=str(data["version"]),
        system=str(data.get("system") or ""),
        modes={m: dict(data[m]) for m in MODES},
        questions=tuple(q.strip() for q in questions),
        max_chars={str(k): int(v) for k, v in (data.get("max_chars") or {}).items()},
        template=template,
        source=folder,
    )


def render(template: str, values: dict[str, Any]) -> str:
    """Fill ``{name}`` placeholders that ``values`` knows; other braces (JSON examples) stay as they are."""
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


def labels_lines(labels: dict[str, Any]) -> str:
    """The labels as short lines for a prompt: '车辆属性:车辆品牌=东风,…' and one line per plate."""
    vehicle = labels.get(VEHICLE_GROUP) or {}
    lines = [f"{VEHICLE_GROUP}:" + ",".join(f"{f}={vehicle.get(f, UNKNOWN)}" for f in VEHICLE_FIELDS)]
    plates = labels.get(PLATE_GROUP) or []
    if not plates:
        lines.append(f"{PLATE_GROUP}:无(图中没有可见车牌)")
    for index, plate in enumerate(plates, 1):
        name = PLATE_GROUP if len(plates) == 1 else f"{PLATE_GROUP}(第{index}块)"
        lines.append(f"{name}:" + ",".join(f"{f}={plate.get(f, UNKNOWN)}" for f in PLATE_FIELDS))
    return "\n".join(lines)


def plate_numbers(labels: dict[str, Any]) -> str:
    numbers = [p.get(PLATE_NUMBER, UNKNOWN) for p in labels.get(PLATE_GROUP) or []]
    numbers = [n for n in numbers if n and n != UNKNOWN]
    return "、".join(numbers) if numbers else "无"


@dataclass
class Request:
    """One teacher call: the rendered prompt plus what a label-only writer needs."""

    key: str
    mode: str
    labels: dict[str, Any]
    question: str | None
    system: str
    prompt: str
    image: bytes | None = None
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass
class Completion:
    text: str
    usage: dict[str, int] | None = None
    attempts: int = 1
    retried: dict[str, int] = field(default_factory=dict)


class TeacherError(Exception):
    """A request that failed for good. ``reason`` is short and record-independent (summaries group by it);
    ``fatal`` means every further request would fail too (bad key, unknown model)."""

    def __init__(self, reason: str, *, fatal: bool = False, retried: dict[str, int] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal
        self.retried = retried or {}


def build_request(prompts: Prompts, mode: str, key: str, labels: dict[str, Any], *, question: str | None,
                  image: bytes | None = None, inputs: dict[str, str] | None = None) -> Request:
    inputs = inputs or {}
    values = {
        "labels": labels_lines(labels),
        "answer": json.dumps(answer_from_labels(labels), ensure_ascii=False),
        "plate_numbers": plate_numbers(labels),
        "question": question or "",
        "max_chars": prompts.max_chars.get(mode, 300),
        "describe": inputs.get("describe", ""),
        "caption": inputs.get("caption", ""),
    }
    return Request(key=key, mode=mode, labels=labels, question=question, system=prompts.system,
                   prompt=render(prompts.modes[mode]["prompt"], values), image=image if mode in IMAGE_MODES else None,
                   inputs=inputs)


# --- images -------------------------------------------------------------------------------------------------

_MIME = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG": "image/png"}


def image_data_url(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """A base64 data URL of the image, shrunk (aspect kept) so width * height <= ``max_pixels``.
    Returns ``(url, width, height)`` of what is sent; an undecodable image is a :class:`TeacherError`."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise TeacherError("image cannot be decoded")
    height, width = image.shape[:2]
    mime = next((m for magic, m in _MIME.items() if data.startswith(magic)), None)
    if width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        width, height = max(1, int(width * scale)), max(1, int(height * scale))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        mime = None
    if mime is None:
        ok, encoded = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), 92])
        if not ok:  # pragma: no cover - a decoded uint8 image always encodes
            raise TeacherError("image cannot be encoded")
        data, mime = encoded.tobytes(), "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", width, height


# --- rate limit and retries ---------------------------------------------------------------------------------

class RateLimiter:
    """Spaces request starts at least 60/rpm seconds apart across all threads (0 = unlimited)."""

    def __init__(self, rpm: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 60.0 / rpm if rpm and rpm > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` seconds or HTTP date)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random, retry_after: float | None = None) -> float:
    """Exponential backoff with 'equal jitter' (between half and all of ``base * 2**attempt``, at most ``cap``);
    a server's Retry-After wins (up to ``RETRY_AFTER_CAP``), plus up to 10 % so a crowd of clients does not
    return at the same instant."""
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP) * (1.0 + 0.1 * rng.random())
    delay = min(cap, base * (2 ** attempt))
    return delay / 2 + rng.random() * delay / 2


# --- backends -----------------------------------------------------------------------------------------------

class TeacherBackend:
    """What `plates teach` needs from a teacher: a ``name`` (the ``--backend`` value, registered with
    :func:`register_backend`), a one-line ``help``, ``from_args`` to build one from the command line, the
    ``model`` it answers as, and ``complete``, which writes the text for one :class:`Request` (raising
    :class:`TeacherError` for a request that failed for good). ``complete`` is called from several threads."""

    name: str = ""
    help: str = ""
    model: str = ""
    counts_tokens = True  # the summary reports token usage

    @classmethod
    def from_args(cls, args: Any, prompts: Prompts) -> TeacherBackend:
        """Build the backend from `plates teach`'s parsed arguments; a missing or stray flag is a UserError."""
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


BACKENDS: dict[str, type[TeacherBackend]] = {}


def register_backend(cls: type[TeacherBackend]) -> type[TeacherBackend]:
    """Class decorator: make a backend available as ``plates teach --backend NAME``."""
    if not cls.name or cls.name in BACKENDS:
        raise ValueError(f"a teacher backend needs a unique name, not {cls.name!r}")
    BACKENDS[cls.name] = cls
    return cls


def make_backend(args: Any, prompts: Prompts) -> TeacherBackend:
    """The backend ``args.backend`` names, built from the command line."""
    if args.backend not in BACKENDS:
        raise UserError(f"unknown teacher backend {args.backend!r}; choose from {', '.join(sorted(BACKENDS))}")
    return BACKENDS[args.backend].from_args(args, prompts)


def refuse_flags(args: Any, backend: str, flags: dict[str, str]) -> None:
    """A backend that ignores a flag says so instead of silently dropping it."""
    given = [flag for attribute, flag in flags.items() if getattr(args, attribute, None)]
    if given:
        raise UserError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} not used by --backend {backend}")


@register_backend
class OpenAIBackend(TeacherBackend):
    """Chat completions against one or more OpenAI-compatible servers."""

    name = "openai"
    help = "any OpenAI-compatible chat-completions server (GPT-4o, DashScope, vLLM, `swift deploy`)"

    @classmethod
    def from_args(cls, args: Any, prompts: Prompts) -> OpenAIBackend:
        import os
        import sys

        if not args.base_url:
            raise UserError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1 for `swift deploy`)")
        if not args.model:
            raise UserError("--backend openai needs --model (the served model name, or 'auto' to ask the server)")
        api_key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""
        if not api_key:
            print(f"plates teach: note: ${args.api_key_env} is not set; sending no key (fine for local servers "
                  "such as `swift deploy`)", file=sys.stderr)
            api_key = "EMPTY"
        return cls(args.base_url, args.model, api_key, timeout=args.timeout, retries=args.retries,
                   max_pixels=args.max_pixels, rpm=args.rpm, max_tokens=args.max_tokens,
                   temperature=args.temperature)

    def __init__(self, base_urls: list[str], model: str, api_key: str, *, timeout: float = 120.0, retries: int = 5,
                 max_pixels: int = DEFAULT_MAX_PIXELS, rpm: float = 0.0, max_tokens: int = 1024,
                 temperature: float | None = 0.7, backoff_base: float = 1.0, backoff_cap: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, max_response_bytes: int | None = None):
        """``timeout`` is the total time one request may take (connecting, sending, the whole reply); a reply
        body over ``max_response_bytes`` (default :data:`plates.openai_client.DEFAULT_MAX_RESPONSE_BYTES`)
        is a failed request, retried like a 5xx, and so is a 200 whose body is not a JSON completion."""
        from plates.openai_client import DEFAULT_MAX_RESPONSE_BYTES, make_client

        if not base_urls:
            raise UserError("--backend openai needs at least one --base-url")
        self.base_urls = list(base_urls)
        self._secret = api_key
        self._clients = [make_client(url, api_key, timeout=timeout,
                                     max_response_bytes=max_response_bytes or DEFAULT_MAX_RESPONSE_BYTES)
                         for url in self.base_urls]
        self._turn = itertools.count()
        self._turn_lock = threading.Lock()
        self.model = model
        self.max_response_bytes = max_response_bytes
        self.max_reply_chars = max(MIN_REPLY_CHARS, REPLY_CHARS_PER_TOKEN * max_tokens)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.max_pixels = max_pixels
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.limiter = RateLimiter(rpm)
        self._sleep = sleep
        self._rng = random.Random()

    @property
    def fingerprint(self) -> str:
        return self.model

    def _client(self):
        with self._turn_lock:
            return self._clients[next(self._turn) % len(self._clients)]

    def resolve_model(self) -> str:
        """Replace ``auto`` by the first model the server lists (``swift deploy`` serves exactly one)."""
        if self.model != "auto":
            return self.model
        import openai

        try:
            models = [m.id for m in self._clients[0].models.list()]
        except (openai.APIError, ValueError, AttributeError) as exc:  # ValueError: a body that is not JSON
            raise UserError(f"--model auto: cannot list models at {self.base_urls[0]} "
                            f"({_describe_error(exc, self._secret)})") from None
        if not models:
            raise UserError(f"--model auto: {self.base_urls[0]} serves no model")
        self.model = models[0]
        return self.model

    def check_servers(self) -> list[str]:
        """Ask every server which models it serves (a cheap request): an unreachable server, or one that is
        not OpenAI-compatible, is a one-line UserError naming its URL before any work starts. Returns the
        first model each server lists."""
        import openai

        first = []
        for url, client in zip(self.base_urls, self._clients):
            try:
                models = [m.id for m in client.models.list()]
            except (openai.APIError, ValueError, AttributeError) as exc:
                raise UserError(f"{url}: cannot list its models ({_describe_error(exc, self._secret)}); "
                                "is the server running?") from None
            if not models:
                raise UserError(f"{url}: serves no model")
            first.append(models[0])
        return first

    def messages(self, request: Request) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        if request.image is not None:
            url, _, _ = image_data_url(request.image, self.max_pixels)
            content: Any = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": request.prompt}]
        else:
            content = request.prompt
        messages.append({"role": "user", "content": content})
        return messages

    def complete(self, request: Request) -> Completion:
        import openai

        from plates.openai_client import failure_kind

        messages = self.messages(request)
        retried: dict[str, int] = {}
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        for attempt in range(self.retries + 1):
            self.limiter.wait()
            try:
                response = self._client().chat.completions.create(**kwargs)
                completion = _completion(response, attempt + 1, retried)
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
                raise TeacherError(_describe_error(exc, self._secret), fatal=True, retried=retried) from None
            except openai.APIStatusError as exc:
                kind = str(exc.status_code)
                if not _retryable_status(exc.status_code):
                    raise TeacherError(_describe_error(exc, self._secret), retried=retried) from None
                wait = retry_after_seconds(exc.response.headers if exc.response is not None else None)
            except (openai.APIError, ValueError) as exc:  # ValueError: a body that is not JSON, or not a completion
                kind, wait = failure_kind(exc) or "bad response", None
            else:
                if len(completion.text) > self.max_reply_chars:
                    raise TeacherError(f"reply too long: over {self.max_reply_chars} characters (the server ignored "
                                       f"--max-tokens {self.max_tokens}); not stored", retried=retried)
                return completion
            retried[kind] = retried.get(kind, 0) + 1
            if attempt == self.retries:
                break
            self._sleep(backoff_delay(attempt, self.backoff_base, self.backoff_cap, self._rng, wait))
        last = max(retried, key=lambda k: retried[k]) if retried else "error"
        raise TeacherError(_give_up_reason(last, self.retries + 1, self.timeout, self.max_response_bytes),
                           retried=retried)


def _retryable_status(status: int) -> bool:
    return status in (408, 409, 425, 429) or status >= 500


def _give_up_reason(kind: str, attempts: int, timeout: float, max_bytes: int | None = None) -> str:
    if kind == "timeout":
        return f"timeout: no complete answer within {timeout:g} s, {attempts} attempts"
    if kind == "connection":
        return f"connection failed, {attempts} attempts"
    if kind == "too large":
        from plates.openai_client import DEFAULT_MAX_RESPONSE_BYTES

        return f"response too large: over {(max_bytes or DEFAULT_MAX_RESPONSE_BYTES) >> 20} MB, {attempts} attempts"
    if kind == "bad response":
        return f"bad response: not a JSON chat completion, {attempts} attempts"
    return f"HTTP {kind}, {attempts} attempts"


def _describe_error(exc: Exception, secret: str = "") -> str:
    status = getattr(exc, "status_code", None)
    text = str(getattr(exc, "message", "") or exc).strip()
    message = text.splitlines()[0][:160] if text else type(exc).__name__
    if secret and len(secret) >= 4:
        message = message.replace(secret, "***")
    return f"HTTP {status}: {message}" if status else message


def _completion(response: Any, attempts: int, retried: dict[str, int]) -> Completion:
    choices = getattr(response, "choices", None) or []
    if not isinstance(choices, list) or not choices:
        raise ValueError("response has no choices")
    text = getattr(getattr(choices[0], "message", None), "content", None) or ""
    if not isinstance(text, str):
        raise ValueError("message content is not text")
    text = text.strip()
    usage = getattr(response, "usage", None)
    tokens = None
    if usage is not None:
        try:
            tokens = {"prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                      "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0)}
        except (TypeError, ValueError):  # a server's odd usage block does not cost the answer
            tokens = None
    return Completion(text=text, usage=tokens, attempts=attempts, retried=retried)

