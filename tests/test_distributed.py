"""Training through `accelerate launch` with 2 CPU processes: the same adapters as one process.

Each process trains on its half of the global batch; the random numbers are drawn for the whole
batch and sliced, and DDP averages the halves' gradients, so only float summation order differs.
On CPU `accelerate launch --cpu --num_processes 2` starts one process (it expects mpirun), so the
test uses the torchrun launcher with `ACCELERATE_USE_CPU=1`, as the README documents.
"""

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

TRAIN = ["-m", "dreamcache_lite.cli", "train", "--batch-size", "4", "--diagnostics-size", "0",
         "--checkpoint-every", "2", "--lr", "1e-3", "--warmup-steps", "1"]
LAUNCH = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no"]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1"}


def _run(args, out, steps, processes=1):
    cmd = [sys.executable, *(LAUNCH if processes == 2 else []), *args, "--steps", str(steps), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _max_difference(a, b) -> float:
    x, y = load_file(a / "adapters.safetensors"), load_file(b / "adapters.safetensors")
    assert x.keys() == y.keys()
    return max((x[k] - y[k]).abs().max().item() for k in x)


def test_two_processes_end_with_the_adapters_of_one(tmp_path):
    _run(TRAIN, tmp_path / "one", steps=3)
    _run(TRAIN, tmp_path / "two", steps=2, processes=2)  # stopped after the step-2 checkpoint ...
    _run(TRAIN, tmp_path / "two", steps=3, processes=2)  # ... and resumed by two processes
    assert _max_difference(tmp_path / "one", tmp_path / "two") < 1e-4  # measured 7.5e-6
    one = [json.loads(r)["loss"] for r in (tmp_path / "one" / "loss.jsonl").read_text().splitlines()]
    two = [json.loads(r)["loss"] for r in (tmp_path / "two" / "loss.jsonl").read_text().splitlines()]
    assert len(two) == 3 and one == pytest.approx(two, rel=1e-4)  # one log, written by one process


def test_one_process_is_deterministic_with_a_seed(tmp_path):
    _run(TRAIN, tmp_path / "a", steps=2)
    _run(TRAIN, tmp_path / "b", steps=2)
    assert _max_difference(tmp_path / "a", tmp_path / "b") == 0.0


def test_a_batch_that_does_not_split_over_the_processes_is_named(tmp_path):
    args = [a if a != "4" else "3" for a in TRAIN]
    done = subprocess.run([sys.executable, *LAUNCH, *args, "--steps", "1", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode != 0
    assert "batch size 3 does not split evenly over 2 processes" in done.stdout + done.stderr
