"""Session fixtures: small real data built once (drawn images, the tiny Qwen2.5-VL)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MODELSCOPE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test leaves os.environ as it found it: ms-swift code run in-process exports some of its arguments
    (``model_kwargs``) and a later test's plan would read them as the user's own environment."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Qwen2.5-VL that real ms-swift accepts (built once, no download)."""
    from plates.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2.5-vl")


@pytest.fixture(scope="session")
def synth_dump(tmp_path_factory) -> Path:
    """A small labelled dump of drawn JPEGs named in the seed's grammar (plus a few broken names)."""
    from plates.synth import make_dump

    root = tmp_path_factory.mktemp("dump") / "dump with space"
    make_dump(root, 24, seed=0, broken=2, corrupt=1)
    return root


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """Where a training run's folder would be, under a name with CJK, a space and a colon (not created)."""
    return tmp_path / "输出 runs:1" / "v0-20250101-000000"


@pytest.fixture
def val_file(tmp_path) -> Path:
    """A three-line validation set (one image path, an empty answer) for infer command lines."""
    path = tmp_path / "数据 集：val.jsonl"
    row = {"messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": "{}"}],
           "images": ["/x.jpg"]}
    path.write_text((json.dumps(row) + "\n") * 3, encoding="utf-8")
    return path
