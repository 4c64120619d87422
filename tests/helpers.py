"""Small helpers shared by several test modules."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import string
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def argv_pairs(argv: list[str]) -> dict[str, list[str]]:
    """``--key v1 v2 --flag v`` -> {"key": ["v1", "v2"], "flag": ["v"]}: an ms-swift argv read back as options."""
    out: dict[str, list[str]] = {}
    key = None
    for item in argv:
        if item.startswith("--"):
            key = item[2:]
            out[key] = []
        elif key is not None:
            out[key].append(item)
    return out


@contextlib.contextmanager
def serving(argv: list[str], log_path: Path, url: str, *, env: dict[str, str] | None = None,
            timeout: float = 300, grace: float = 30) -> Iterator[subprocess.Popen]:
    """A server command (`plates serve`, `swift deploy`) in its own process group, output to ``log_path``; yields
    once ``GET {url}/models`` answers 200, and stops the whole group afterwards (SIGTERM, SIGKILL after
    ``grace`` seconds). A server that exits or is not up within ``timeout`` fails the test with its log's tail."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(1)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


LANGUAGE_KEY = "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight"
VISION_KEY = "base_model.model.model.visual.blocks.0.attn.qkv.lora_A.weight"


def lora_checkpoint(run: Path, keys: list[str], step: int = 10) -> Path:
    """A LoRA checkpoint folder as ms-swift writes it (adapter config + safetensors with these tensor names)."""
    import json

    import torch
    from safetensors.torch import save_file

    ckpt = run / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    save_file({k: torch.zeros(2, 2) for k in keys}, str(ckpt / "adapter_model.safetensors"))
    return ckpt


def unlabelled_images(folder: Path, n: int, *, seed: int = 0) -> list[Path]:
    """``n`` drawn vehicle JPEGs under plain names (no labels), one in a nested folder with spaces."""
    import shutil

    from plates.dump import iter_files
    from plates.synth import make_dump

    dump = folder.parent / f".{folder.name}-src"
    make_dump(dump, n, seed=seed)
    out = []
    for index, rel in enumerate(iter_files(dump)[:n]):
        target = folder / ("sub dir/相机 2" if index % 2 else "") / f"IMG_{index:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dump / rel, target)
        out.append(target)
    shutil.rmtree(dump)
    return out


# Characters file names of a dump are drawn from in the property tests of names and of `plates parse`.
NAME_ALPHABET = string.ascii_letters + string.digits + " _-.:：&车辆属性牌中国云南省蓝色单层燃油车新能源挂学无"


def demo_sample(answer, prompt="<image>请识别"):
    """A dataset row as `plates build` writes it: the prompt, then the answer (a JSON answer from a dict)."""
    return {"messages": [{"role": "user", "content": prompt},
                         {"role": "assistant", "content": answer if isinstance(answer, str) else
                          json.dumps(answer, ensure_ascii=False)}], "images": ["/x.jpg"]}


def demo_answer(colour, number, plates=1):
    """An extraction answer with this body colour and plate number (``plates`` copies of the plate)."""
    plate = {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": number, "车牌颜色": "蓝色", "车牌层数": "单层车牌",
             "车牌用途": "燃油车车牌"}
    group = plate if plates == 1 else [plate] * plates
    return {"车辆属性": {"车辆品牌": "丰田", "车辆类型": "小轿车", "车辆颜色": colour, "车辆朝向": "正面"},
            "车牌属性": group}
