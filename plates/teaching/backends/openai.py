"""The ``openai`` teacher backend: any OpenAI-compatible chat-completions server (GPT-4o, DashScope, ModelScope
API-Inference, vLLM, ``swift deploy``), asked through the core :class:`plates.chat_client.ChatClient` (images as
data URLs, round-robin over several base URLs, retries with backoff and Retry-After, a rate limit)."""

from __future__ import annotations

import dataclasses
import os
import sys

from plates.chat_client import DEFAULT_MAX_PIXELS, ChatClient, Completion
from plates.errors import UserError
from plates.teaching.backends import TeacherBackend, non_negative, option, positive_int
from plates.teaching.prompts import Prompts, Request


class OpenAIBackend(TeacherBackend):
    """Chat completions against one or more OpenAI-compatible servers."""

    name = "openai"
    help = "any OpenAI-compatible chat-completions server (GPT-4o, DashScope, vLLM, `swift deploy`)"

    @dataclasses.dataclass(frozen=True)
    class Options:
        base_url: list[str] = option(append=True, metavar="URL",
                                     help="endpoint such as http://127.0.0.1:8000/v1; repeat to spread load over "
                                          "replicas")
        model: str | None = option(help="the served model name, or 'auto' to take the server's first model")
        api_key_env: str = option("OPENAI_API_KEY", metavar="NAME",
                                  help="environment variable holding the API key (default OPENAI_API_KEY); "
                                       "the key is never printed or written")
        rpm: float = option(0.0, type=non_negative, help="at most this many requests a minute (0 = no limit)")
        retries: int = option(5, type=int,
                              help="retries per request on 429, 5xx, timeouts and dropped connections (default 5)")
        timeout: float = option(120.0, type=non_negative,
                                help="total seconds one request may take: connecting, sending and the whole reply "
                                     "(default 120); a slower or larger (over 8 MB) reply is retried")
        max_pixels: int = option(DEFAULT_MAX_PIXELS, type=positive_int,
                                 help="shrink images to at most this many pixels before sending "
                                      f"(default {DEFAULT_MAX_PIXELS})")
        max_tokens: int = option(1024, type=positive_int, help="completion token limit (default 1024)")
        temperature: float = option(0.7, type=float, help="sampling temperature (default 0.7)")

    def __init__(self, client: ChatClient):
        self.client = client

    @classmethod
    def from_options(cls, options: Options, prompts: Prompts) -> OpenAIBackend:
        if not options.base_url:
            raise UserError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1 for `swift deploy`)")
        if not options.model:
            raise UserError("--backend openai needs --model (the served model name, or 'auto' to ask the server)")
        api_key = os.environ.get(options.api_key_env, "") if options.api_key_env else ""
        if not api_key:
            print(f"plates teach: note: ${options.api_key_env} is not set; sending no key (fine for local servers "
                  "such as `swift deploy`)", file=sys.stderr)
            api_key = "EMPTY"
        return cls(ChatClient(options.base_url, options.model, api_key, timeout=options.timeout,
                              retries=options.retries, max_pixels=options.max_pixels, rpm=options.rpm,
                              max_tokens=options.max_tokens, temperature=options.temperature))

    @property
    def model(self) -> str:
        return self.client.model

    def resolve_model(self) -> str:
        return self.client.resolve_model()

    def complete(self, request: Request) -> Completion:
        return self.client.complete(request.system, request.prompt, request.image)
