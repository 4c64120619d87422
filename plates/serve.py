"""`plates serve`: the tuned model behind an OpenAI-compatible HTTP endpoint (`swift deploy`).

What a client must send to get the answer the model was taught: one user message holding the image and the plates
extraction prompt (:data:`PROMPT`, the exact text `plates build` trains with), greedy decoding. The server applies
the rest the way `swift infer` does: the chat template, the training run's ``max_pixels`` (read back from the plates
manifest: ms-swift does not save it) and, by default, schema-constrained decoding (every answer valid against
``eval/answer.schema.json``; the constraint applies to every request this server answers).

Client (the ``openai`` package)::

    import base64, json, openai
    from plates.serve import PROMPT            # or copy the text from `plates serve --print-prompt`
    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="EMPTY")
    image = base64.b64encode(open("car.jpg", "rb").read()).decode()
    reply = client.chat.completions.create(model="plates", temperature=0, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{image}"}},
        {"type": "text", "text": PROMPT}]}])
    answer = json.loads(reply.choices[0].message.content)
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

from plates import swift_cli
from plates.errors import UserError
from plates.outputs import input_path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_NAME = "plates"
DEFAULT_MAX_NEW_TOKENS = 512


def prompt() -> str:
    """The extraction prompt the model was trained on (from `plates build`)."""
    from plates.build import EXTRACTION_PROMPT

    return EXTRACTION_PROMPT


def __getattr__(name: str) -> Any:  # ``from plates.serve import PROMPT`` without importing build at module load
    if name == "PROMPT":
        return prompt()
    raise AttributeError(name)


def image_message(image: str | os.PathLike, text: str | None = None) -> dict[str, Any]:
    """The OpenAI chat message that asks the served model about one local image (sent as a base64 data URL)."""
    path = Path(image)
    mime = mimetypes.guess_type(path.name)[0] or "image/jpeg"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}},
                                        {"type": "text", "text": text if text is not None else prompt()}]}


def build_serve_command(*, adapters: str | None, model: str | None, host: str = DEFAULT_HOST,
                        port: int = DEFAULT_PORT, served_model_name: str = DEFAULT_NAME, backend: str = "transformers",
                        decoding: str = "schema", max_pixels: int | None = None,
                        max_new_tokens: int | None = DEFAULT_MAX_NEW_TOKENS, batch_size: int | None = None,
                        template: str | None = None, api_key_env: str | None = None,
                        overrides: list[str] | None = None, gpus: str | None = None,
                        notes: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """argv and environment for `swift deploy` (reads only the checkpoint's own files)."""
    from plates.decoding import decoding_options
    from plates.infer import BACKENDS, generation_caps, model_source

    if not adapters and not model:
        raise UserError("pass --adapters CHECKPOINT (a fine-tuned run) or --model MODEL (e.g. a merged export)")
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose from {', '.join(sorted(BACKENDS))}")
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: not a TCP port")
    backend = BACKENDS[backend]
    notes = notes if notes is not None else []
    options, max_pixels = model_source(adapters, model, backend, max_pixels=max_pixels, template=template,
                                       notes=notes, command="serve")
    options.update(infer_backend=backend, host=host, port=port, served_model_name=served_model_name)
    options.update(generation_caps(max_new_tokens, batch_size, max_pixels))
    env: dict[str, str] = {}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise UserError(f"--api-key-env {api_key_env}: that environment variable is not set")
        options["api_key"] = key
    decode_options, decode_env = decoding_options(decoding, backend)
    values, raw = swift_cli.parse_overrides(overrides)
    options = swift_cli.resolve_options("deploy", {**options, **decode_options, **values}, raw, notes=notes)
    env.update(decode_env)
    if max_pixels:
        env["MAX_PIXELS"] = str(max_pixels)
    if gpus is not None:
        from plates.train import parse_gpus

        env["CUDA_VISIBLE_DEVICES"] = ",".join(parse_gpus(gpus))
    return [*swift_cli.swift_command(), "deploy", *swift_cli.options_to_argv(options)], env


def _configure(parser: argparse.ArgumentParser) -> None:
    from plates.infer import BACKENDS

    source = parser.add_mutually_exclusive_group()
    source.add_argument("--adapters", type=input_path(), help="LoRA checkpoint from `plates train` (or its run folder)")
    source.add_argument("--model", help="a model without adapters: a `plates export` folder, or a hub id",
                        type=input_path())
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}; "
                                                              "0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"model name clients send (default {DEFAULT_NAME})")
    parser.add_argument("--decoding", choices=("schema", "free"), default="schema",
                        help="schema: every answer valid against eval/answer.schema.json (default); free: unconstrained")
    parser.add_argument("--backend", default="transformers", choices=sorted(BACKENDS), help="inference engine")
    parser.add_argument("--max-pixels", type=int, help="image pixel cap; default: what the run trained with")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                        help=f"answer length cap in tokens (default {DEFAULT_MAX_NEW_TOKENS})")
    parser.add_argument("--batch-size", type=int, help="requests per forward pass (max_batch_size)")
    parser.add_argument("--template", help="ms-swift template, e.g. qwen2_5_vl (needed for some local models)")
    parser.add_argument("--api-key-env", metavar="VAR", help="require this environment variable's value as API key")
    parser.add_argument("--gpus", help="GPUs to use, e.g. 0 (sets CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="any other `swift deploy` argument, checked against the installed ms-swift")
    parser.add_argument("--print-prompt", action="store_true", help="print the prompt clients send, and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the command line; run nothing")


def _run(args: argparse.Namespace) -> int:
    """Serve the tuned model as an OpenAI-compatible endpoint with `swift deploy` (Ctrl-C stops it). Clients send
    one user message with the image (a URL or a base64 data URL) and the plates prompt (`--print-prompt`); the
    answer is the JSON object, schema-valid by construction with the default --decoding schema.

    examples:
      plates serve --adapters output/v0-…/checkpoint-300 --port 8000
      plates serve --model output/v0-…/checkpoint-300-merged --backend vllm --host 0.0.0.0
    """
    if args.print_prompt:
        print(prompt())
        return 0
    notes: list[str] = []
    argv, env = build_serve_command(adapters=args.adapters, model=args.model, host=args.host, port=args.port,
                                    served_model_name=args.name, backend=args.backend, decoding=args.decoding,
                                    max_pixels=args.max_pixels, max_new_tokens=args.max_new_tokens,
                                    batch_size=args.batch_size, template=args.template,
                                    api_key_env=args.api_key_env, overrides=args.overrides, gpus=args.gpus,
                                    notes=notes)
    for note in notes:
        print(f"plates serve: note: {note}", file=sys.stderr)
    if args.dry_run:
        print(swift_cli.format_command(swift_cli.redact_argv(argv), swift_cli.redact_env(env)))
        return 0
    print(f"plates serve: OpenAI-compatible endpoint at http://{args.host}:{args.port}/v1, model {args.name!r} "
          "(Ctrl-C stops it)", file=sys.stderr)
    return swift_cli.run_streaming(argv, env)


COMMANDS = {"serve": (_configure, _run, "serve the tuned model as an OpenAI-compatible endpoint (swift deploy)")}
