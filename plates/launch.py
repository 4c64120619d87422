"""How an ms-swift run spreads over GPUs and machines, shared by `plates train` and `plates predict`.

ms-swift launches itself with torchrun when ``NPROC_PER_NODE`` or ``NNODES`` is set (``swift/cli/main.py``) and
reads ``NODE_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` for several machines; `swift sft` then trains data
parallel (or DeepSpeed), `swift infer` shards its dataset over the ranks and gathers every rank's answers to rank
0 in dataset order. This module turns plates' short flags into that environment, declared and checked once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
from dataclasses import dataclass

from plates.errors import UserError
from plates.signals import terminate_like_interrupt
from plates.swift_cli import parse_gpus


@dataclass(frozen=True)
class Nodes:
    """The multi-process/multi-machine flags: ``model_parallel`` keeps one process spreading the model over every
    listed GPU instead of one process per GPU; the rest are torchrun's rendezvous."""

    model_parallel: bool = False
    nnodes: int | None = None
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Nodes":
        return cls(model_parallel=bool(getattr(args, "model_parallel", False)), nnodes=getattr(args, "nnodes", None),
                   node_rank=getattr(args, "node_rank", None), master_addr=getattr(args, "master_addr", None),
                   master_port=getattr(args, "master_port", None))

    @property
    def several_machines(self) -> bool:
        return (self.nnodes or 1) > 1

    def env(self, gpus: str | None) -> dict[str, str]:
        return distributed_env(gpus, model_parallel=self.model_parallel, nnodes=self.nnodes, node_rank=self.node_rank,
                               master_addr=self.master_addr, master_port=self.master_port)


def add_distributed_arguments(parser: argparse.ArgumentParser, *, model_parallel_help: str | None = None) -> None:
    """``--model-parallel``, ``--nnodes``, ``--node-rank``, ``--master-addr``, ``--master-port`` (with ``--gpus``,
    which each command declares with its own help)."""
    parser.add_argument("--model-parallel", action="store_true",
                        help=model_parallel_help or "with several --gpus: one process spreading the model over them "
                                                    "(the seed's way)")
    parser.add_argument("--nnodes", type=int, help="number of machines (NNODES)")
    parser.add_argument("--node-rank", type=int, help="this machine's rank, 0 on the master (NODE_RANK)")
    parser.add_argument("--master-addr", help="address of the rank-0 machine (MASTER_ADDR)")
    parser.add_argument("--master-port", type=int, help="port on the rank-0 machine (MASTER_PORT)")


def distributed_env(gpus: str | None = None, *, model_parallel: bool = False, nnodes: int | None = None,
                    node_rank: int | None = None, master_addr: str | None = None,
                    master_port: int | None = None) -> dict[str, str]:
    """The environment ms-swift reads to launch torchrun: CUDA_VISIBLE_DEVICES, NPROC_PER_NODE, NNODES,
    NODE_RANK, MASTER_ADDR, MASTER_PORT. ``model_parallel`` keeps one process spreading the model over all the
    listed GPUs (the seed's way), instead of one process per GPU."""
    env: dict[str, str] = {}
    if gpus is not None:
        ids = parse_gpus(gpus)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
        if not model_parallel and (len(ids) > 1 or (nnodes or 1) > 1):
            env["NPROC_PER_NODE"] = str(len(ids))
    if nnodes is not None:
        if nnodes < 1:
            raise UserError("--nnodes must be at least 1")
        if nnodes > 1:
            if master_addr is None:
                raise UserError("--nnodes > 1 needs --master-addr (the address of node rank 0)")
            if node_rank is None:
                raise UserError("--nnodes > 1 needs --node-rank (0 on the master node)")
        env["NNODES"] = str(nnodes)
    if node_rank is not None:
        if node_rank < 0 or (nnodes is not None and node_rank >= nnodes):
            raise UserError(f"--node-rank must be between 0 and {(nnodes or 1) - 1}")
        env["NODE_RANK"] = str(node_rank)
    if master_addr is not None:
        env["MASTER_ADDR"] = master_addr
    if master_port is not None:
        if not 0 < master_port < 65536:
            raise UserError("--master-port must be a TCP port (1-65535)")
        env["MASTER_PORT"] = str(master_port)
    return env


def check_gpus_present(gpus: str | None) -> None:
    """Refuse ``--gpus`` on the machine that would run it when torch sees no CUDA device, or fewer devices than an
    index listed (a dry run may be for another machine and is not checked). Imports torch only when asked."""
    if gpus is None:
        return
    ids = parse_gpus(gpus)
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a torch that cannot even probe CUDA has none for us
        count = 0
    if count == 0:
        raise UserError(f"--gpus {gpus}: this machine has no CUDA GPU (torch sees none); leave out --gpus to run on "
                        "the CPU, or run it on a GPU machine (--dry-run shows the launch)")
    if "CUDA_VISIBLE_DEVICES" not in os.environ and max(int(i) for i in ids) >= count:
        raise UserError(f"--gpus {gpus}: this machine has {count} CUDA GPU(s), numbered 0 to {count - 1}")


def stop_on_signals() -> contextlib.AbstractContextManager:
    """SIGTERM and SIGHUP raise :class:`plates.errors.Terminated` (a KeyboardInterrupt with ``signum``) while a
    run is in flight, as Ctrl-C does, so a child ms-swift is stopped and temporary files are removed by the
    ``finally`` blocks. For callers of the Python API: under the CLI, whose handler
    (:func:`plates.signals.terminate_like_interrupt`) is already installed, it does nothing."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        return terminate_like_interrupt()
    return contextlib.nullcontext()
