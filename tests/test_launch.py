"""plates.launch: the GPU/machine flags `train` and `predict` share, and stopping a run on SIGTERM/SIGHUP."""

from __future__ import annotations

import argparse
import os
import signal

import pytest

from plates.errors import UserError
from plates.launch import Nodes, add_distributed_arguments, check_gpus_present, distributed_env, stop_on_signals


def test_flags_parse_into_nodes_and_the_torchrun_environment():
    parser = argparse.ArgumentParser()
    add_distributed_arguments(parser)
    nodes = Nodes.from_args(parser.parse_args(["--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1"]))
    assert nodes.several_machines and not nodes.model_parallel
    assert nodes.env("0,1") == {"CUDA_VISIBLE_DEVICES": "0,1", "NPROC_PER_NODE": "2", "NNODES": "2",
                                "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1"}
    assert Nodes(model_parallel=True).env("0,1") == {"CUDA_VISIBLE_DEVICES": "0,1"}
    with pytest.raises(UserError, match="needs --master-addr"):
        distributed_env("0", nnodes=2, node_rank=0)
    with pytest.raises(UserError, match="TCP port"):
        distributed_env(master_port=70000)


def test_a_gpu_list_needs_cuda_on_the_machine_that_runs_it():
    import torch

    check_gpus_present(None)
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(UserError, match="no CUDA GPU"):
        check_gpus_present("0,1")


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="POSIX signals")
def test_sigterm_raises_keyboard_interrupt_once_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as caught:
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # Python runs the handler between bytecodes, right after the kill
                pass
            pytest.fail("SIGTERM did not interrupt")
    assert caught.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
