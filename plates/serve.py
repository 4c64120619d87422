"""`plates serve`: the tuned model behind an OpenAI-compatible HTTP endpoint (`swift deploy`).

What a client must send to get the answer the model was taught: one user message holding the image and the
question the run was trained with (`plates serve --adapters RUN --print-prompt` prints it: the run manifest's, see
:func:`plates.student.for_run`; plates' default :data:`plates.student.EXTRACTION_PROMPT` unless the dataset was
built with ``--prompt``), greedy decoding. The server applies the rest the way `swift infer` does: the chat
template, the run's system text (``--system`` of `plates build`, passed to ms-swift as the default system), the
training run's ``max_pixels`` (read back from the plates manifest: ms-swift does not save it) and, by default,
schema-constrained decoding (every answer valid against ``eval/answer.schema.json``; the constraint applies to
every request this server answers). Plate boxes (``车牌位置``) come back in the original image's pixels, as in
`plates predict`'s answers, for non-streamed requests about one image (:mod:`plates.deploy_launcher`).

Client (the ``openai`` package)::

    import base64, json, openai
    PROMPT = "…"                               # the text of `plates serve --adapters RUN --print-prompt`
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
from plates.decoding import decoding_options
from plates.deploy_launcher import BOX_MAPPING_ENV, KEY_ENV, box_mapping_value
from plates.errors import UserError
from plates.grounding import mapper_for_command
from plates.inference import BACKENDS, InferenceSettings
from plates.student import StudentContract, for_run
from plates.swift_infer import generation_caps, model_source

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_NAME = "plates"
DEFAULT_MAX_NEW_TOKENS = 512


def served_contract(settings: InferenceSettings, notes: list[str] | None = None) -> StudentContract:
    """What the served model was trained to be asked: its run's question and system text."""
    return for_run(settings.adapters or settings.model, notes)


def image_message(image: str | os.PathLike, text: str | None = None) -> dict[str, Any]:
    """The OpenAI chat message that asks the served model about one local image (sent as a base64 data URL);
    ``text``: the question (default: plates' default extraction prompt; a run's is ``served_contract().question()``)."""
    path = Path(image)
    mime = mimetypes.guess_type(path.name)[0] or "image/jpeg"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}},
                                        {"type": "text", "text": text if text is not None else
                                         StudentContract().question()}]}


def build_serve_command(settings: InferenceSettings | None = None, *, host: str = DEFAULT_HOST,
                        port: int = DEFAULT_PORT, served_model_name: str = DEFAULT_NAME,
                        api_key_env: str | None = None, notes: list[str] | None = None,
                        **values: Any) -> tuple[list[str], dict[str, str]]:
    """argv and environment for `swift deploy` (reads only the checkpoint's own files); ``settings`` (or its
    fields as keywords, serve's own default answer cap of 512 tokens) say what answers and how."""
    s = InferenceSettings.of(settings or InferenceSettings(max_new_tokens=DEFAULT_MAX_NEW_TOKENS), **values)
    if not s.adapters and not s.model:
        raise UserError("pass --adapters CHECKPOINT (a fine-tuned run) or --model MODEL (e.g. a merged export)")
    if s.backend not in BACKENDS:
        raise UserError(f"unknown backend {s.backend!r}; choose from {', '.join(sorted(BACKENDS))}")
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: not a TCP port")
    backend = s.swift_backend
    notes = notes if notes is not None else []
    options, max_pixels = model_source(s.adapters, s.model, backend, max_pixels=s.max_pixels, template=s.template,
                                       notes=notes, command="serve")
    options.update(infer_backend=backend, host=host, port=port, served_model_name=served_model_name)
    options.update(generation_caps(s.max_new_tokens, s.batch_size, max_pixels))
    system = served_contract(s, notes).system
    if system:
        options["system"] = system  # ms-swift's default system: a client sends only the user message
    env: dict[str, str] = {}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise UserError(f"--api-key-env {api_key_env}: that environment variable is not set")
        env[KEY_ENV] = key  # the launcher hands it to ms-swift: never in argv (`ps`) or ms-swift's logs
    decode_options, decode_env = decoding_options(s.decoding, backend)
    values, raw = swift_cli.parse_overrides(s.overrides)
    options = swift_cli.resolve_options("deploy", {**options, **decode_options, **values}, raw, notes=notes)
    if "api_key" in options:
        raise UserError("--set api_key: a key on the command line is visible to every user (`ps`); put it in an "
                        "environment variable and pass --api-key-env VAR")
    env.update(decode_env)
    if max_pixels:
        env["MAX_PIXELS"] = str(max_pixels)
    if s.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(swift_cli.parse_gpus(s.gpus))
    argv = [sys.executable, "-m", "plates.deploy_launcher", "deploy", *swift_cli.options_to_argv(options)]
    mapper = mapper_for_command(argv, env, s.adapters, s.model)
    if mapper.convention:
        env[BOX_MAPPING_ENV] = box_mapping_value(mapper)  # answers' plate boxes in original pixels, as predict's
    return argv, env


def bind_address(argv: list[str]) -> tuple[str, int]:
    """The host and port a `swift deploy` command line binds (after every ``--set``)."""
    pairs = dict(zip(argv, argv[1:]))
    return pairs.get("--host", DEFAULT_HOST), int(pairs.get("--port", DEFAULT_PORT))


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, port: int, *, has_key: bool, insecure_no_key: bool, probe: bool = True) -> None:
    """Refuse a bind beyond loopback without an API key (anyone who can reach the port would use the model, and
    ms-swift fetches image URLs for its callers), and, with ``probe``, a port that is already taken: ms-swift would
    move to the next free one and clients would not find the server."""
    if not is_loopback(host) and not has_key and not insecure_no_key:
        raise UserError(f"--host {host}: serving beyond this machine without an API key; pass --api-key-env VAR "
                        "(clients send its value as the bearer token), or --insecure-no-key to serve anyway")
    if not probe:
        return
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"--port {port}: {host}:{port} is already in use (another server?); stop it or "
                                "choose another --port") from None
            raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
        except socket.gaierror as exc:
            raise UserError(f"--host {host}: unknown address ({exc.strerror})") from None


def _configure(parser: argparse.ArgumentParser) -> None:
    InferenceSettings.add_arguments(parser, command="deploy", include=("source",), source_required=False)
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}; "
                                                              "0.0.0.0 for every interface, which needs --api-key-env)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"model name clients send (default {DEFAULT_NAME})")
    InferenceSettings.add_arguments(parser, command="deploy", max_new_tokens=DEFAULT_MAX_NEW_TOKENS, unit="requests",
                                    include=("decoding", "backend", "max_pixels", "max_new_tokens", "batch_size",
                                             "template", "gpus", "overrides"))
    parser.add_argument("--api-key-env", metavar="VAR",
                        help="require this environment variable's value as API key (it reaches ms-swift through "
                             "the environment, never a command line or log); needed to serve beyond loopback")
    parser.add_argument("--insecure-no-key", action="store_true",
                        help="allow a --host beyond loopback without --api-key-env (anyone who can reach the port "
                             "can use the model)")
    parser.add_argument("--print-prompt", action="store_true",
                        help="print the prompt clients send (the one the --adapters/--model run was trained with), "
                             "and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the command line; run nothing")


def _run(args: argparse.Namespace) -> int:
    """Serve the tuned model as an OpenAI-compatible endpoint with `swift deploy` (Ctrl-C stops it). Clients send
    one user message with the image (a URL or a base64 data URL) and the plates prompt (`--print-prompt`); the
    answer is the JSON object, schema-valid by construction with the default --decoding schema.

    examples:
      plates serve --adapters output/v0-…/checkpoint-300 --port 8000
      MY_KEY=… plates serve --model output/v0-…/checkpoint-300-merged --backend vllm --host 0.0.0.0 --api-key-env MY_KEY
    """
    notes: list[str] = []
    if args.print_prompt:
        contract = served_contract(InferenceSettings.from_args(args), notes)
        for note in notes:
            print(f"plates serve: note: {note}", file=sys.stderr)
        if contract.system:
            print(f"plates serve: note: the server adds the run's system text {contract.system!r}", file=sys.stderr)
        print(contract.question())
        return 0
    argv, env = build_serve_command(InferenceSettings.from_args(args), host=args.host, port=args.port,
                                    served_model_name=args.name, api_key_env=args.api_key_env, notes=notes)
    for note in notes:
        print(f"plates serve: note: {note}", file=sys.stderr)
    host, port = bind_address(argv)
    check_bind(host, port, has_key=bool(args.api_key_env), insecure_no_key=args.insecure_no_key,
               probe=not args.dry_run)
    if args.dry_run:
        print(swift_cli.format_command(swift_cli.redact_argv(argv), swift_cli.redact_env(env)))
        return 0
    shown = f"[{host}]" if ":" in host else host
    print(f"plates serve: OpenAI-compatible endpoint at http://{shown}:{port}/v1, model {args.name!r}"
          + (", API key required" if args.api_key_env else "") + " (Ctrl-C stops it)", file=sys.stderr)
    return swift_cli.run_streaming(argv, env)


COMMANDS = {"serve": (_configure, _run, "serve the tuned model as an OpenAI-compatible endpoint (swift deploy)")}
