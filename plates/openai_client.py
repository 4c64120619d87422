"""The one way plates talks to OpenAI-compatible servers: the official ``openai`` client, bounded.

The client's own ``timeout`` limits each socket read, not the request: a server that sends its reply one byte
a second (or its headers that slowly) keeps a request alive for ever, and nothing limits how much a reply may
hold. :func:`make_client` gives an ``openai.OpenAI`` whose HTTP client (``openai.DefaultHttpxClient`` with a
custom transport, the hook the SDK documents for this) enforces

* a **total deadline** per request: connecting, sending, the headers and the whole body must finish within
  ``timeout`` seconds. Every socket read and write waits at most until the deadline, so a slow drip ends in
  a timeout (``openai.APITimeoutError``) at the deadline, not after it;
* a **size cap** on the response body (:data:`DEFAULT_MAX_RESPONSE_BYTES`): a larger reply is abandoned as
  soon as the cap is passed and raised as ``openai.APIConnectionError`` caused by :func:`response_too_large`.

Callers (:class:`plates.chat_client.ChatClient`, for `plates teach` and `plates predict --endpoint`) treat both
as failed requests and retry them as they retry a 5xx; see :func:`failure_kind`.
"""

from __future__ import annotations

import functools
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_MAX_RESPONSE_BYTES = 8 << 20  # a chat completion of a few thousand tokens is a few tens of KB

_local = threading.local()  # the deadline of the request this thread is sending (sync clients: one at a time)


def _remaining(timeout: float | None, exc_type: type[Exception]) -> float | None:
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise exc_type("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


@functools.lru_cache(maxsize=None)
def _deadline_backend():
    import httpcore2

    class DeadlineStream(httpcore2.NetworkStream):
        """A socket stream whose reads and writes never wait past the current request's deadline."""

        def __init__(self, inner: Any):
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._inner.read(max_bytes, _remaining(timeout, httpcore2.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._inner.write(buffer, _remaining(timeout, httpcore2.WriteTimeout))

        def close(self) -> None:
            self._inner.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None):
            return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                        _remaining(timeout, httpcore2.ConnectTimeout)))

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class DeadlineBackend(httpcore2.NetworkBackend):
        def __init__(self, inner: Any):
            self._inner = inner

        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            return DeadlineStream(self._inner.connect_tcp(host, port, _remaining(timeout, httpcore2.ConnectTimeout),
                                                          local_address, socket_options))

        def connect_unix_socket(self, path, timeout=None, socket_options=None):
            return DeadlineStream(self._inner.connect_unix_socket(
                path, _remaining(timeout, httpcore2.ConnectTimeout), socket_options))

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    return DeadlineBackend


@functools.lru_cache(maxsize=None)
def response_too_large() -> type[Exception]:
    """The exception a response body over the cap raises while it is read (an ``httpx2.RequestError``, so the
    SDK reports it as ``openai.APIConnectionError`` caused by it); a function so httpx2 loads only when used."""
    import httpx2

    class ResponseTooLarge(httpx2.RequestError):
        """A response body over the cap; the connection is dropped."""

    return ResponseTooLarge


def _transport(timeout: float, max_bytes: int, proxy: str | None):
    import httpx2

    too_large = response_too_large()
    inner = httpx2.HTTPTransport(proxy=proxy)
    # The transport builds its connection pool itself; give that pool our socket layer (httpcore's documented
    # network_backend hook, set here because httpx does not take it as an argument).
    pool = inner._pool
    pool._network_backend = _deadline_backend()(pool._network_backend)

    class CappedBody(httpx2.SyncByteStream):
        def __init__(self, stream: Any, request: Any):
            self._stream, self._request, self._read = stream, request, 0

        def __iter__(self):
            for chunk in self._stream:
                self._read += len(chunk)
                if self._read > max_bytes:
                    raise too_large(f"response body over {max_bytes} bytes", request=self._request)
                yield chunk

        def close(self) -> None:
            self._stream.close()

    class BoundedTransport(httpx2.BaseTransport):
        def handle_request(self, request):
            _local.deadline = time.monotonic() + timeout
            response = inner.handle_request(request)
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > max_bytes:
                response.close()
                raise too_large(f"response body of {length} bytes, over {max_bytes}", request=request)
            response.stream = CappedBody(response.stream, request)
            return response

        def close(self) -> None:
            inner.close()

    return BoundedTransport()


def _proxy_for(base_url: str) -> str | None:
    """The proxy the environment names for ``base_url`` (HTTP(S)_PROXY, NO_PROXY), as httpx would pick it."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme or "http")


def make_client(base_url: str, api_key: str, *, timeout: float = 120.0,
                max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES):
    """An ``openai.OpenAI`` for ``base_url`` whose every request has a total deadline of ``timeout`` seconds
    and a response-size cap, and no retries of its own (callers retry with backoff and Retry-After)."""
    import openai

    http_client = openai.DefaultHttpxClient(
        transport=_transport(timeout, max_response_bytes, _proxy_for(base_url)), trust_env=False,
        timeout=timeout, headers={"Accept-Encoding": "identity"})  # the cap counts what is decoded
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0,
                         http_client=http_client)


def failure_kind(exc: BaseException) -> str | None:
    """How a failed request is counted and retried: 'timeout', 'too large', 'bad response' (a 200 whose body
    is not a JSON completion), 'connection', or None for an error that is not about the transport."""
    import json

    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "too large" if isinstance(exc.__cause__, response_too_large()) else "connection"
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError, openai.APIResponseValidationError)):
        return "bad response"
    return None
