"""`swift deploy` started by `plates serve` without the API key on any command line or in any log.

``swift deploy --api_key KEY`` puts the key in two processes' argv (readable by every user through ``ps`` and
``/proc/PID/cmdline``) and ms-swift prints it twice (its ``run sh:`` line and its ``args:`` dump). This launcher
runs ms-swift's own deploy pipeline in this process instead: the key arrives in the environment variable
:data:`KEY_ENV` (``/proc/PID/environ`` is readable by its owner only), is removed from the environment before any
child starts, and is set on the parsed arguments as a string whose ``repr`` is ``<redacted>``.

It also keeps the port asked for: ms-swift's ``DeployArguments`` silently moves to the next free port when the
port is taken; here the server binds the requested one or fails (`plates serve` has already refused a busy port).

And it answers plate boxes (``车牌位置``) in original-image pixels, as `plates infer` and `plates predict` write
them: the model answers in the coordinates of the image it saw (resized under ``MAX_PIXELS``; Qwen2-VL: 0-1000),
so a non-streamed answer about one image is mapped back with :class:`plates.grounding.BoxMapper`, whose settings
`plates serve` passes in :data:`BOX_MAPPING_ENV`. A streamed answer is sent as the model writes it (its chunks
leave before the box is complete) and keeps the model's coordinates.

Usage (what `plates serve` runs): ``python -m plates.deploy_launcher deploy --model M --port 8000 …``.
"""

import base64
import binascii
import io
import json
import os
import sys
from typing import Any

from plates.grounding import BoxMapper

KEY_ENV = "PLATES_DEPLOY_API_KEY"
BOX_MAPPING_ENV = "PLATES_SERVE_BOX_MAPPING"


class Secret(str):
    """A string that shows as ``<redacted>`` in reprs (ms-swift logs its arguments' dataclass repr)."""

    def __repr__(self) -> str:
        return "'<redacted>'"


def _requested_port(argv: list[str]) -> int | None:
    for flag, value in zip(argv, argv[1:]):
        if flag == "--port":
            return int(value)
    return None


def box_mapping_value(mapper: BoxMapper) -> str:
    """What `plates serve` puts in :data:`BOX_MAPPING_ENV` for ``mapper``."""
    return json.dumps({"convention": mapper.convention, "max_pixels": mapper.max_pixels, "factor": mapper.factor})


def box_mapper_from(value: str | None) -> BoxMapper | None:
    """The mapper :func:`box_mapping_value` describes; None when there is none or no known convention."""
    if not value:
        return None
    settings = json.loads(value)
    if not settings.get("convention"):
        return None
    return BoxMapper(settings["convention"], settings.get("max_pixels"), settings.get("factor") or 28)


def _image_values(request: Any) -> list[Any]:
    values = list(getattr(request, "images", None) or [])
    for message in getattr(request, "messages", None) or []:
        content = message.get("content") if isinstance(message, dict) else None
        for item in content if isinstance(content, list) else []:
            key = item.get("type", "") if isinstance(item, dict) else ""
            if key in ("image", "image_url") and key in item:
                value = item[key]
                values.append(value.get("url") if isinstance(value, dict) else value)
    return values


def request_image_size(request: Any) -> tuple[int, int] | None:
    """(width, height) of the one image a chat request asks about, read from its data URL or base64 (ms-swift
    turns local paths into data URLs before a request arrives here); None for no image, several images, a remote
    URL or bytes that are not an image: boxes are then left as the model answered."""
    values = _image_values(request)
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    value = values[0].strip()
    if value.lower().startswith(("http://", "https://")):
        return None
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        data = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def map_response_boxes(response: Any, mapper: BoxMapper, request: Any) -> int:
    """Rewrite, in place, the boxes of every choice of a chat (``message.content``) or completion (``text``)
    response about ``request``'s image in original pixels (the image is decoded only when an answer holds a box);
    returns how many answers changed."""
    changed, size, sized = 0, None, False
    for choice in getattr(response, "choices", None) or []:
        holder, attribute = (choice.message, "content") if hasattr(choice, "message") else (choice, "text")
        text = getattr(holder, attribute, None)
        if not mapper.may_map(text):
            continue
        if not sized:
            size, sized = request_image_size(request), True
        text, mapped = mapper.response_for_size(text, size)
        if mapped:
            setattr(holder, attribute, text)
            changed += 1
    return changed


def deploy_class(mapper: BoxMapper | None):
    """ms-swift's ``SwiftDeploy``, answering boxes in original pixels when ``mapper`` is given."""
    from fastapi import Request
    from swift.infer_engine.protocol import ChatCompletionRequest
    from swift.pipelines.infer.deploy import SwiftDeploy

    if mapper is None:
        return SwiftDeploy

    class PlatesDeploy(SwiftDeploy):
        async def create_chat_completion(self, request: ChatCompletionRequest, raw_request: Request, *,
                                         return_cmpl_response: bool = False):
            """ms-swift's route, its annotations kept as objects (this module has no postponed annotations):
            FastAPI reads them to parse the body."""
            response = await super().create_chat_completion(request, raw_request,
                                                            return_cmpl_response=return_cmpl_response)
            if not getattr(request, "stream", False):
                map_response_boxes(response, mapper, request)
            return response

    return PlatesDeploy


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["deploy"]:
        argv = argv[1:]
    key = os.environ.pop(KEY_ENV, None)
    mapper = box_mapper_from(os.environ.pop(BOX_MAPPING_ENV, None))
    if any(item == "--api_key" or item.startswith("--api_key=") for item in argv):
        print("plates serve: error: the API key is passed through the environment, never argv", file=sys.stderr)
        return 2
    from swift.arguments import DeployArguments
    from swift.utils import parse_args

    sys.argv = [sys.argv[0], *argv]
    args, remaining = parse_args(DeployArguments, argv)
    if remaining:
        print(f"plates serve: error: arguments ms-swift does not know: {' '.join(remaining)}", file=sys.stderr)
        return 2
    port = _requested_port(argv)
    if port is not None:
        args.port = port  # never the next free one: a client would not find the server
    if key:
        args.api_key = Secret(key)
    deploy_class(mapper)(args).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
