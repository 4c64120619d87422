"""Chat completions against one or more OpenAI-compatible servers: the one caller `plates teach --backend
openai` and `plates predict --endpoint` share (GPT-4o, DashScope, ModelScope API-Inference, vLLM,
``swift deploy``, `plates serve`).

* Requests go through :func:`plates.openai_client.make_client` (a total deadline per request, a body cap).
* Images go as base64 data URLs (``swift deploy`` rejects ``file://`` paths with ':'), shrunk to a pixel budget
  first (:func:`image_data_url`).
* Several base URLs are used round-robin, one request at a time each, from any number of threads.
* Retries are ours, not the client's: exponential backoff with jitter on 429, 5xx, timeouts, dropped
  connections, bad and oversized bodies, honouring ``Retry-After`` (:func:`backoff_delay`,
  :func:`retry_after_seconds`); a shared :class:`RateLimiter` keeps requests under a rate.
* A request that failed for good is a :class:`RequestFailed` with a short, record-independent reason (callers'
  summaries group by it).
"""

from __future__ import annotations

import base64
import email.utils
import itertools
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from plates.errors import UserError
from plates.openai_client import DEFAULT_MAX_RESPONSE_BYTES, failure_kind, make_client

DEFAULT_MAX_PIXELS = 1003520  # the seed's MAX_PIXELS (1280 * 28 * 28)
RETRY_AFTER_CAP = 600.0  # seconds: a longer Retry-After is honoured only up to this
# A reply longer than this many characters per max-tokens token (and at least MIN_REPLY_CHARS) means the
# server ignored the token limit: it is a failed request, never stored whole.
REPLY_CHARS_PER_TOKEN = 16
MIN_REPLY_CHARS = 4096


@dataclass
class Completion:
    """One answer: its text, the server's token counts (if any), and how many attempts and retries it took."""

    text: str
    usage: dict[str, int] | None = None
    attempts: int = 1
    retried: dict[str, int] = field(default_factory=dict)


class RequestFailed(Exception):
    """A request that failed for good. ``reason`` is short and record-independent (summaries group by it);
    ``fatal`` means every further request would fail too (bad key, unknown model)."""

    def __init__(self, reason: str, *, fatal: bool = False, retried: dict[str, int] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal
        self.retried = retried or {}


# --- images -------------------------------------------------------------------------------------------------

_MIME = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG": "image/png"}


def image_data_url(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """A base64 data URL of the image, shrunk (aspect kept) so width * height <= ``max_pixels``.
    Returns ``(url, width, height)`` of what is sent; an undecodable image is a :class:`RequestFailed`."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise RequestFailed("image cannot be decoded")
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
            raise RequestFailed("image cannot be encoded")
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


# --- the caller ---------------------------------------------------------------------------------------------

class ChatClient:
    """Chat completions for one model served at one or more base URLs, used round-robin from many threads."""

    def __init__(self, base_urls: list[str], model: str, api_key: str, *, timeout: float = 120.0, retries: int = 5,
                 max_pixels: int = DEFAULT_MAX_PIXELS, rpm: float = 0.0, max_tokens: int = 1024,
                 temperature: float | None = 0.7, backoff_base: float = 1.0, backoff_cap: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, max_response_bytes: int | None = None,
                 max_tokens_flag: str = "--max-tokens"):
        """``timeout`` is the total time one request may take (connecting, sending, the whole reply); a reply
        body over ``max_response_bytes`` (default :data:`plates.openai_client.DEFAULT_MAX_RESPONSE_BYTES`)
        is a failed request, retried like a 5xx, and so is a 200 whose body is not a JSON completion.
        ``max_tokens_flag`` names the caller's option in the message for a reply that ignored the limit."""
        if not base_urls:
            raise UserError("at least one base URL is needed")
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
        self.max_tokens_flag = max_tokens_flag
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

    def messages(self, system: str, prompt: str, image: bytes | None = None) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        if image is not None:
            url, _, _ = image_data_url(image, self.max_pixels)
            content: Any = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": prompt}]
        else:
            content = prompt
        messages.append({"role": "user", "content": content})
        return messages

    def complete(self, system: str, prompt: str, image: bytes | None = None) -> Completion:
        """One answer, retried as the module says; raises :class:`RequestFailed` when it cannot be had."""
        import openai

        messages = self.messages(system, prompt, image)
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
                raise RequestFailed(_describe_error(exc, self._secret), fatal=True, retried=retried) from None
            except openai.APIStatusError as exc:
                kind = str(exc.status_code)
                if not _retryable_status(exc.status_code):
                    raise RequestFailed(_describe_error(exc, self._secret), retried=retried) from None
                wait = retry_after_seconds(exc.response.headers if exc.response is not None else None)
            except (openai.APIError, ValueError) as exc:  # ValueError: a body that is not JSON, or not a completion
                kind, wait = failure_kind(exc) or "bad response", None
            else:
                if len(completion.text) > self.max_reply_chars:
                    raise RequestFailed(f"reply too long: over {self.max_reply_chars} characters (the server "
                                        f"ignored {self.max_tokens_flag} {self.max_tokens}); not stored",
                                        retried=retried)
                return completion
            retried[kind] = retried.get(kind, 0) + 1
            if attempt == self.retries:
                break
            self._sleep(backoff_delay(attempt, self.backoff_base, self.backoff_cap, self._rng, wait))
        last = max(retried, key=lambda k: retried[k]) if retried else "error"
        raise RequestFailed(_give_up_reason(last, self.retries + 1, self.timeout, self.max_response_bytes),
                            retried=retried)


def _retryable_status(status: int) -> bool:
    return status in (408, 409, 425, 429) or status >= 500


def _give_up_reason(kind: str, attempts: int, timeout: float, max_bytes: int | None = None) -> str:
    if kind == "timeout":
        return f"timeout: no complete answer within {timeout:g} s, {attempts} attempts"
    if kind == "connection":
        return f"connection failed, {attempts} attempts"
    if kind == "too large":
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
