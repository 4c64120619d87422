"""`plates serve`: the `swift deploy` command line, and a real server on loopback (tiny model, CPU) answering an
`openai` client that sends an image as a base64 data URL with the plates prompt."""

from __future__ import annotations

import json
import shlex
import socket
import sys

import pytest

from plates.cli import main
from plates.errors import UserError
from plates.deploy_launcher import KEY_ENV
from plates.serve import build_serve_command, image_message
from plates.student import EXTRACTION_PROMPT
from helpers import argv_pairs, serving


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_deploy_command_carries_the_generation_settings(tiny_model_dir, tmp_path, monkeypatch):
    (tiny_model_dir.parent / "plain").mkdir(exist_ok=True)
    argv, env = build_serve_command(adapters=None, model=str(tiny_model_dir), port=8123, max_new_tokens=99,
                                    max_pixels=50176)
    got = argv_pairs(argv[argv.index("deploy") + 1:])
    assert got["model"] == [str(tiny_model_dir)] and got["template"] == ["qwen2_5_vl"]
    assert got["host"] == ["127.0.0.1"] and got["port"] == ["8123"] and got["served_model_name"] == ["plates"]
    assert got["max_new_tokens"] == ["99"] and got["max_pixels"] == ["50176"] and env["MAX_PIXELS"] == "50176"
    assert got["external_plugins"][0].endswith("swift_plugin.py") and env["PLATES_DECODING_SCHEMA"]
    free, _ = build_serve_command(adapters=None, model=str(tiny_model_dir), decoding="free")
    assert "--external_plugins" not in free
    monkeypatch.setenv("MY_KEY", "s3cret")
    argv, env = build_serve_command(adapters=None, model="m", api_key_env="MY_KEY")
    assert env[KEY_ENV] == "s3cret" and not any("s3cret" in word for word in argv) and "api_key" not in argv_pairs(argv)
    with pytest.raises(UserError, match="not set"):
        build_serve_command(adapters=None, model="m", api_key_env="NOT_SET_ANYWHERE_13")
    with pytest.raises(UserError, match="--adapters"):
        build_serve_command(adapters=None, model=None)
    with pytest.raises(UserError, match="not a TCP port"):
        build_serve_command(adapters=None, model="m", port=70000)


def test_dry_run_redacts_the_key_and_print_prompt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MY_KEY", "s3cret")
    assert main(["serve", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "--api-key-env", "MY_KEY", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "s3cret" not in text and "deploy" in shlex.split(text.replace("\\\n", " "))
    assert main(["serve", "--print-prompt"]) == 0
    shown = capsys.readouterr()
    assert shown.out.strip() == EXTRACTION_PROMPT and "default prompt" in shown.err


def test_image_message_is_a_data_url(tmp_path):
    image = tmp_path / "car.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    message = image_message(image)
    assert message["content"][0]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")
    assert message["content"][1] == {"type": "text", "text": EXTRACTION_PROMPT}


@pytest.mark.slow
def test_serve_answers_an_openai_client_on_loopback(tiny_model_dir, tmp_path):
    import openai
    from plates.answer_lines import describe_answer
    from plates.synth import make_dump
    from plates.dump import iter_files

    make_dump(tmp_path / "imgs", 1, seed=2)
    image = tmp_path / "imgs" / iter_files(tmp_path / "imgs")[0]
    port = _free_port()
    log_path = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "plates.cli", "serve", "--model", str(tiny_model_dir), "--port", str(port),
            "--max-new-tokens", "1024", "--max-pixels", str(112 * 112)]
    base_url = f"http://127.0.0.1:{port}/v1"
    with serving(argv, log_path, base_url):
        client = openai.OpenAI(base_url=base_url, api_key="EMPTY", timeout=240)
        assert [m.id for m in client.models.list().data] == ["plates"]
        reply = client.chat.completions.create(model="plates", temperature=0, messages=[image_message(image)])
        text = reply.choices[0].message.content
        answer = json.loads(text)  # schema-constrained: strict JSON even from random weights
        assert set(answer) == {"车辆属性", "车牌属性"}
        assert describe_answer(text)["schema_valid"], text
        assert reply.usage.prompt_tokens > 20, "the image's visual tokens reached the model"


def test_served_boxes_come_back_in_original_pixels(tiny_model_dir, tmp_path):
    """What the launcher does to a real ms-swift response about a real 720 x 1160 JPEG sent as a data URL: the
    model's box (pixels of the image it saw under MAX_PIXELS) becomes original pixels, as predict writes it; an
    answer without a box, a remote image and a request with two images are left as answered."""
    import base64

    import cv2
    import numpy as np
    from swift.infer_engine.protocol import (ChatCompletionRequest, ChatCompletionResponse,
                                             ChatCompletionResponseChoice, ChatMessage, UsageInfo)

    from plates.deploy_launcher import BOX_MAPPING_ENV, box_mapper_from, map_response_boxes
    from plates.grounding import to_model, to_original

    argv, env = build_serve_command(adapters=None, model=str(tiny_model_dir), max_pixels=50176)
    mapper = box_mapper_from(env[BOX_MAPPING_ENV])
    assert (mapper.convention, mapper.max_pixels) == ("none", 50176)
    image = tmp_path / "车 1.jpg"
    cv2.imwrite(str(image), np.zeros((1160, 720, 3), np.uint8))
    url = "data:image/jpeg;base64," + base64.b64encode(image.read_bytes()).decode()
    box = [90, 700, 400, 820]
    seen = to_model(box, 720, 1160, "none", 50176)
    answer = {"车辆属性": {"车辆颜色": "白色"}, "车牌属性": {"车牌号码": "皖AE981N", "车牌位置": seen}}

    def exchange(images, text):
        content = [{"type": "image_url", "image_url": {"url": url}} for url in images] + [{"type": "text", "text": "?"}]
        request = ChatCompletionRequest(model="plates", messages=[{"role": "user", "content": content}])
        response = ChatCompletionResponse(model="plates", usage=UsageInfo(1, 1, 2), choices=[
            ChatCompletionResponseChoice(0, ChatMessage("assistant", text), "stop")])
        return request, response

    text = json.dumps(answer, ensure_ascii=False)
    request, response = exchange([url], text)
    assert map_response_boxes(response, mapper, request) == 1
    got = json.loads(response.choices[0].message.content)["车牌属性"]["车牌位置"]
    assert got == to_original(seen, 720, 1160, "none", 50176) and got != seen
    assert all(abs(a - b) <= 5 for a, b in zip(got, box))
    completion = exchange([url], text)[1].to_cmpl_response()
    assert map_response_boxes(completion, mapper, request) == 1 and json.loads(completion.choices[0].text) == \
        json.loads(response.choices[0].message.content)
    for images in ([url, url], ["https://example.invalid/car.jpg"]):
        request, response = exchange(images, text)
        assert map_response_boxes(response, mapper, request) == 0 and response.choices[0].message.content == text
    plain = json.dumps({"车辆属性": {"车辆颜色": "白色"}}, ensure_ascii=False)
    request, response = exchange([url], plain)
    assert map_response_boxes(response, mapper, request) == 0 and response.choices[0].message.content == plain
