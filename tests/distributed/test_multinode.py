"""One training run across two nodes: torchrun starts `vr train` on each node (here two torchrun agents on this
machine, gloo over localhost) with trainer.num_nodes=2, and both processes write into one run directory.

What is compared, and why the figures must agree: the two-node run (data.batch_size=16 per process) against a
one-process run of the same recipe at the same effective batch (data.batch_size=32, trainer=ddp with one node).
Both use Lightning's DistributedSampler with the same seeded permutation, so step k of node 0 and node 1 together
holds exactly the 32 images of the one process's step k; DDP averages the two halves' gradients, which is the
gradient of the 32. Plain SGD (no momentum, no weight decay), no augmentation (it draws random numbers per
process) and a model without batch norm (lenet5_modern: no per-process batch statistics) then leave both runs
with the same weights, to float rounding, at validation time. The validation and test figures agree to 1e-6
only if the nodes formed one world, split the data without overlap, averaged their gradients and gathered the
metrics: a node that stepped on its own half, or scored only its own half, gives other figures. (A learning rate
of 0 would keep the weights equal too, but the optimizer builder refuses it, and it would leave the gradient
exchange untested.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

RECIPE = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.precision=32-true",
    "debug=fast",  # 5 training steps
    "trainer.limit_val_batches=null",  # the whole splits: batch limits count per process
    "trainer.limit_test_batches=null",
    # MNIST's 500 validation and 1,000 test images split evenly between 2 processes, in batches of 250 everywhere
    # (uneven shards would skew the synchronised losses: Lightning averages the sample counts with integer division).
    "data.eval_batch_size=250",
    "data.augment=null",
    "model=lenet5_modern",
    "task.optimizer.name=sgd",
    "task.optimizer.momentum=0",
    "task.optimizer.weight_decay=0",
    "task.optimizer.lr=0.5",  # large enough for 5 steps to move the accuracy off the 0.1 of a constant guess
    "callbacks.progress_bar=none",
    "logger.tensorboard=false",
]
COMPARED = ["val/acc1", "val/acc5", "val/loss", "best/val/acc1", "test/acc1", "test/acc5", "test/loss"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], cwd: Path) -> subprocess.Popen:
    """``command`` in a session of its own, so that it and its children (torchrun's worker) can be ended together."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def outputs(processes: list[subprocess.Popen]) -> list[tuple[str, str]]:
    """Each process's (stdout, stderr) once all have ended; on a time-out, or a node waiting for one that failed,
    every process group still running is ended."""
    try:
        return [p.communicate(timeout=600) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.mark.slow
def test_two_nodes_train_one_run_with_the_figures_of_one_process(tmp_path):
    shared, reference = tmp_path / "two_nodes", tmp_path / "one_process"
    port = free_port()
    nodes = [
        start(
            # torchrun, run by this Python: torchrun --nnodes 2 --node-rank R --nproc-per-node 1 --master-addr ...
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank)]
            + ["--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port)]
            + ["-m", "vision_research.cli", "train", *RECIPE, "trainer.num_nodes=2", "data.batch_size=16"]
            + [f"hydra.run.dir={shared}"],
            tmp_path,
        )
        for rank in (0, 1)
    ]
    single = start(
        [sys.executable, "-m", "vision_research.cli", "train", *RECIPE, "data.batch_size=32"]
        + [f"hydra.run.dir={reference}"],
        tmp_path,
    )
    (out0, err0), (out1, err1), (_, err_single) = outputs([*nodes, single])
    assert nodes[0].returncode == 0, err0[-3000:]
    assert nodes[1].returncode == 0, err1[-3000:]
    assert single.returncode == 0, err_single[-3000:]

    # Each node's log says it joined a world of 2 (its console, and the run directory's log both append to);
    # rank 0 alone prints the run's summary.
    joined = [f"Initializing distributed: GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" for rank in (0, 1)]
    assert joined[0] in err0 and joined[1] in err1
    (log,) = shared.glob("*.log")
    assert all(line in log.read_text() for line in joined)
    assert out0.count("run: ") == 1 and "run: " not in out1
    # One run directory for both nodes (nothing went to a runs/ folder of its own) with one summary.
    assert sorted(p.parent for p in tmp_path.rglob("metrics.json")) == [reference, shared]
    two, one = (json.loads((d / "metrics.json").read_text()) for d in (shared, reference))
    assert (two["processes"], one["processes"]) == (2, 1) and two["global_step"] == one["global_step"] == 5

    for key in COMPARED:
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], abs=1e-6), key
    assert 0.15 < one["metrics"]["val/acc1"] < 1  # the steps moved the weights, so a wrong step would show
    weights = [
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"] for d in (shared, reference)
    ]
    assert max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[1]) < 1e-6
