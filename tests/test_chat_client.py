"""The chat-completions caller `plates teach --backend openai` and `plates predict --endpoint` share: images as
data URLs, backoff and Retry-After, the rate limiter, and the caller itself against the loopback server of
test_teach.py (round-robin, retries, fatal errors, replies over the cap)."""

from __future__ import annotations

import base64
import email.utils
import random
import time

import pytest

from plates.chat_client import (
    ChatClient, RateLimiter, RequestFailed, backoff_delay, image_data_url, retry_after_seconds,
)
from plates.errors import UserError
from test_teach import FakeOpenAI


def test_image_data_url_keeps_small_images_and_shrinks_big_ones():
    import cv2
    import numpy as np

    small = cv2.imencode(".png", np.full((20, 30, 3), 128, np.uint8))[1].tobytes()
    url, width, height = image_data_url(small, 10_000)
    assert url == "data:image/png;base64," + base64.b64encode(small).decode() and (width, height) == (30, 20)
    big = cv2.imencode(".jpg", np.full((800, 1000, 3), 90, np.uint8))[1].tobytes()
    url, width, height = image_data_url(big, 100_000)
    assert width * height <= 100_000 and abs(width / height - 1.25) < 0.02
    with pytest.raises(RequestFailed, match="cannot be decoded"):
        image_data_url(b"\0garbage", 100)


def test_backoff_and_retry_after():
    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, 8.0, rng) for a in range(6)]
    for attempt, delay in enumerate(delays):
        full = min(8.0, 2 ** attempt)
        assert full / 2 <= delay <= full
    assert 3.0 <= backoff_delay(0, 1.0, 8.0, rng, retry_after=3.0) <= 3.3
    assert backoff_delay(0, 1.0, 8.0, rng, retry_after=86400) <= 660
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds({"retry-after": future}) <= 31
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None


def test_rate_limiter_spaces_requests():
    clock = [0.0]
    slept = []
    limiter = RateLimiter(120, clock=lambda: clock[0], sleep=slept.append)
    for _ in range(3):
        limiter.wait()
    assert slept == [0.5, 1.0]
    unlimited = RateLimiter(0, sleep=slept.append)
    unlimited.wait()
    assert slept == [0.5, 1.0]


def test_round_robin_and_retries_with_retry_after():
    slept: list[float] = []
    with FakeOpenAI(faults=["429"], retry_after="7") as first, FakeOpenAI(faults=["500"]) as second:
        client = ChatClient([first.url, second.url], "fake-teacher", "EMPTY", retries=3, sleep=slept.append)
        completion = client.complete("system text", "车牌号码=云KCM158")
        assert "云KCM158" in completion.text and completion.attempts == 3
        assert completion.retried == {"429": 1, "500": 1} and completion.usage["prompt_tokens"] == 100
        assert client.complete("", "no plate here").text
    assert 7.0 <= slept[0] <= 7.7 and len(slept) == 2  # the server's Retry-After, then our own backoff
    assert [r["fault"] for r in first.chat_requests] == ["429", "ok"]
    assert [r["fault"] for r in second.chat_requests] == ["500", "ok"]
    assert first.chat_requests[0]["body"]["messages"][0] == {"role": "system", "content": "system text"}


def test_a_bad_key_is_fatal_and_a_long_reply_names_the_callers_flag():
    with FakeOpenAI(faults=["401", "long"]) as server:
        client = ChatClient([server.url], "fake-teacher", "sk-secret-4711", retries=5, max_tokens=10,
                            max_tokens_flag="--max-new-tokens")
        with pytest.raises(RequestFailed) as failed:
            client.complete("", "q")
        assert failed.value.fatal and "HTTP 401" in failed.value.reason and "sk-secret" not in failed.value.reason
        with pytest.raises(RequestFailed, match=r"ignored --max-new-tokens 10\); not stored"):
            client.complete("", "q")
        assert len(server.chat_requests) == 2


def test_model_auto_and_unreachable_servers_are_one_line_errors():
    with FakeOpenAI(model="served-model") as server:
        client = ChatClient([server.url], "auto", "EMPTY")
        assert client.resolve_model() == "served-model" == client.model
        assert client.check_servers() == ["served-model"]
    with pytest.raises(UserError, match=r"http://127.0.0.1:9/v1: cannot list its models .*is the server running"):
        ChatClient(["http://127.0.0.1:9/v1"], "m", "EMPTY", timeout=5).check_servers()
