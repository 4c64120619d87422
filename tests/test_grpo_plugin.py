"""plates/grpo_plugin.py loaded as ms-swift loads an ``--external_plugins`` file: by path, in a fresh process
that has imported nothing of plates, and again in a dataloader worker (ms-swift replays plugin files there).

Covered elsewhere: each reward equals `plates eval --details`' score for the same answer, through the registry
(tests/test_grpo.py), and a real `swift rlhf` run with them (tests/test_grpo_swift.py, slow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).resolve().parent.parent / "plates" / "grpo_plugin.py"

PROBE = f"""
import json, runpy, sys
from swift.rewards import ORM, orms
assert not any(name.startswith("plates") for name in orms)
assert not any(name == "plates" or name.startswith("plates.") for name in sys.modules)
from swift.utils import import_external_file
import_external_file({str(PLUGIN)!r})
registered = {{name: cls for name, cls in orms.items() if name.startswith("plates")}}
runpy.run_path({str(PLUGIN)!r})  # a dataloader worker replaying the plugin file
answer = json.dumps({{"车辆属性": {{"车辆品牌": "东风", "车辆类型": "重型货车", "车辆颜色": "黑色", "车辆朝向": "背面"}},
                     "车牌属性": {{"车牌国家": "中国", "车牌省份": "上海市", "车牌号码": "沪JG4011",
                                "车牌颜色": "黄色", "车牌层数": "双层车牌", "车牌用途": "货车车牌"}}}},
                    ensure_ascii=False)
print(json.dumps({{
    "names": sorted(registered),
    "orm": all(issubclass(cls, ORM) for cls in registered.values()),
    "same_after_replay": all(orms[name] is cls for name, cls in registered.items()),
    "scores": {{name: cls()([answer, "not an answer"], solution=[answer, answer])
               for name, cls in registered.items()}},
}}))
"""


def test_loading_the_file_registers_the_rewards_ms_swift_looks_up():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["names"] == ["plates_fields", "plates_plate_chars", "plates_schema"]
    assert got["orm"] and got["same_after_replay"]
    assert got["scores"] == {name: [1.0, 0.0] for name in got["names"]}
