"""Throughput of `plates teach` against a teacher with a fixed latency: achieved requests/s next to the ideal.

A local OpenAI-compatible server (stdlib, 127.0.0.1 only) answers every chat request after exactly LATENCY
seconds. With N requests in flight the ideal rate is N / LATENCY; the pipeline (image read + hash + base64,
the openai client, the gate, one fsync'd append per line) should reach >= 80 % of it at concurrency 32.

    .venv/bin/python benchmarks/bench_teach.py [--latency 0.25] [--rounds 12]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TARGET = 0.80
CONCURRENCIES = (1, 8, 32)


def start_server(latency: float) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def log_message(self, *args):
            pass

        def _send(self, payload: dict) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            model = {"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}
            self._send({"object": "list", "data": [model]})

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(latency)
            self._send({"id": "x", "object": "chat.completion", "created": 0, "model": "bench",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "一辆车,车牌号码为云A12345。"}}],
                        "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def make_records(folder: Path, n: int) -> Path:
    import cv2

    from plates.synth import draw_vehicle, random_labels, seed_filename

    rng = random.Random(0)
    rows = []
    for index in range(n):
        labels = random_labels(rng, plates=1)
        name = seed_filename(labels, [f"{index:08d}"])
        cv2.imwrite(str(folder / name), draw_vehicle(labels, 320, 240, rng))
        rows.append({"image": name, "root": str(folder), "format": "seed", "width": 320, "height": 240, "channels": 3,
                     "labels": labels, "ids": [], "warnings": []})
    path = folder / "records.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.25, help="server latency per request, seconds")
    parser.add_argument("--rounds", type=int, default=12, help="requests per worker at each concurrency")
    args = parser.parse_args(argv)

    from plates.chat_client import ChatClient
    from plates.teaching.backends.openai import OpenAIBackend
    from plates.teaching.prompts import load_prompts
    from plates.teaching.stage import run_teach

    prompts = load_prompts()
    server, url = start_server(args.latency)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_teach.") as tmp:
            tmp_path = Path(tmp)
            records = make_records(tmp_path, max(CONCURRENCIES) * args.rounds)
            for concurrency in CONCURRENCIES:
                n = concurrency * args.rounds
                backend = OpenAIBackend(ChatClient([url], "bench", "EMPTY", timeout=30, retries=0))
                out = tmp_path / f"out-{concurrency}.jsonl"
                # warm-up (one round, not timed): lazy imports, regex compilation, the connection pool
                run_teach(records, tmp_path / f"warm-{concurrency}.jsonl", "describe", backend, prompts,
                          concurrency=concurrency, limit=concurrency, show_progress=False)
                start = time.perf_counter()
                summary = run_teach(records, out, "describe", backend, prompts, concurrency=concurrency, limit=n,
                                    show_progress=False)
                seconds = time.perf_counter() - start
                if summary.done != n:
                    print(f"bench_teach: {summary.format()}", file=sys.stderr)
                    return 1
                achieved = n / seconds
                ideal = concurrency / args.latency
                rows.append((concurrency, n, seconds, achieved, ideal, achieved / ideal))
    finally:
        server.shutdown()
        server.server_close()

    print(f"plates teach throughput, teacher latency {args.latency * 1000:.0f} ms (openai backend, describe, "
          f"320x240 JPEGs, fsync per line)")
    print(f"{'concurrency':>11} {'requests':>8} {'seconds':>8} {'achieved/s':>10} {'ideal/s':>8} {'ratio':>6}")
    for concurrency, n, seconds, achieved, ideal, ratio in rows:
        print(f"{concurrency:>11} {n:>8} {seconds:>8.2f} {achieved:>10.1f} {ideal:>8.1f} {ratio:>6.0%}")
    ratio_32 = rows[-1][-1]
    verdict = "PASS" if ratio_32 >= TARGET else "FAIL"
    print(f"target: >= {TARGET:.0%} of ideal at concurrency {CONCURRENCIES[-1]}: {ratio_32:.0%} {verdict}")
    return 0 if ratio_32 >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
