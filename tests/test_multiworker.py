"""`python -m tfsynth.train` as two `MultiWorkerMirroredStrategy` workers on localhost.

docs/training.md ("several machines") documents a two-machine run selected by ``TF_CONFIG``; this runs the same
command as two local processes, one CPU replica each, and checks that both finish, that the chief
wrote a complete run directory for a global batch split over 2 replicas, and that synchronous
training left both workers with the same weights.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY, free_ports

WORKERS = 2
STEPS = 2
BATCH = 4  # the global batch: 2 examples per replica
TIMEOUT_S = 240  # a collective that never completes hangs rather than fails; this turns it into a failure


def _can_bind_localhost() -> bool:
    try:
        free_ports(WORKERS)
    except OSError:
        return False
    return True


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _can_bind_localhost(), reason="cannot bind localhost TCP ports for the workers"),
]


def worker_env(ports: list[int], index: int) -> dict[str, str]:
    """The environment of worker ``index``: its TF_CONFIG, and exactly one CPU device.

    The parent's TF_CONFIG or XLA_FLAGS (which can fake several host devices) must not leak in:
    with one device per worker the replica count equals the worker count. The logical CPUs that
    conftest configures live in this process's runtime only, so they are not inherited.
    """
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CONFIG", "XLA_FLAGS")}
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    env.update(
        TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        CUDA_VISIBLE_DEVICES="",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    return env


def run_workers(commands_and_envs: list[tuple[list[str], dict]], log_dir: Path, timeout: float) -> list[dict]:
    """Starts every worker at once and waits until all have exited, one has failed, or ``timeout``.

    A worker that fails leaves the others waiting for it in a collective (or for it to join
    the cluster), so the first failure ends the wait rather than the timeout; workers still
    running then are killed. Output goes to files, not pipes: a worker blocked on a full pipe
    would stall the collective and look like a hang.

    Returns:
        Per worker: ``returncode`` (negative: killed here), ``stdout`` and ``stderr`` (text).
    """
    processes, logs = [], []
    try:
        for i, (command, env) in enumerate(commands_and_envs):
            out, err = log_dir / f"worker{i}.out", log_dir / f"worker{i}.err"
            logs.append((out, err))
            with open(out, "w") as stdout, open(err, "w") as stderr:
                processes.append(subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr))
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in processes) and not any(p.returncode for p in processes):
            if time.monotonic() > deadline:
                pytest.fail(f"the workers did not finish within {timeout} s:\n" + _tails(logs))
            time.sleep(0.2)
    finally:
        # Nothing outlives the test: a stuck worker would keep its port and a CPU busy.
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [
        {"returncode": p.returncode, "stdout": out.read_text(), "stderr": err.read_text()}
        for p, (out, err) in zip(processes, logs, strict=True)
    ]


def _tails(logs, chars: int = 1500) -> str:
    return "\n".join(f"--- {err.name}:\n{err.read_text()[-chars:]}" for _, err in logs if err.exists())


def summary_of(stdout: str) -> dict:
    """The JSON summary `tfsynth.commands.train.main` prints last (after Keras' progress output)."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def checkpoint_values(checkpoint_dir: Path) -> dict[str, np.ndarray]:
    """Every variable of the latest checkpoint in ``checkpoint_dir`` except the save counter.

    The models' weights appear as ``g_optimizer/_trainable_variables/<i>`` (generator) and
    ``d_optimizer/...`` (discriminator): a checkpoint names each variable by its shortest path in
    the object graph, which for a trainable weight runs through the optimizer that updates it.
    """
    reader = tf.train.load_checkpoint(str(checkpoint_dir))
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.endswith("VARIABLE_VALUE") and not name.startswith("save_counter/")
    }


@pytest.fixture(scope="module")
def two_worker_run(prepared_data, tmp_path_factory):
    """The run directory and per-worker results of one tiny two-worker training run."""
    root = tmp_path_factory.mktemp("multiworker")
    config_file = root / "tiny.json"
    # n_critic 1 instead of TINY's 2: the critic loop is unrolled in train_step, so one update per
    # step means less for each worker to trace; the critic loop is not what this test is about.
    config_file.write_text(json.dumps({**TINY, "loss": {"n_critic": 1}}))
    out = root / "run"
    command = [sys.executable, "-m", "tfsynth.train", "--data", str(prepared_data), "--out", str(out)]
    command += ["--config", str(config_file), "--epochs", "1", "--steps-per-epoch", str(STEPS)]
    command += ["--batch-size", str(BATCH)]
    ports = free_ports(WORKERS)
    results = run_workers([(command, worker_env(ports, i)) for i in range(WORKERS)], root, TIMEOUT_S)
    failed = [(i, r["returncode"], r["stderr"][-2000:]) for i, r in enumerate(results) if r["returncode"] != 0]
    assert not failed, "\n".join(f"--- worker {i} exited {code}:\n{err}" for i, code, err in failed)
    return out, results


def test_both_workers_finish_the_same_steps_over_two_replicas(two_worker_run):
    out, results = two_worker_run
    summaries = [summary_of(result["stdout"]) for result in results]
    # One CPU replica per worker: 2 replicas in sync means both joined the one cluster, and the
    # global batch of 4 was split 2 + 2.
    assert [s["replicas"] for s in summaries] == [WORKERS] * WORKERS
    assert [s["steps"] for s in summaries] == [STEPS] * WORKERS
    assert [s["run_dir"] for s in summaries] == [str(out), str(out / "worker-1")]


def test_the_chief_writes_a_finished_run_directory(two_worker_run):
    out, _ = two_worker_run
    assert json.loads((out / "config.json").read_text())["train"]["batch_size"] == BATCH
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith(f"ckpt-{STEPS}")
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0"]
    assert all(np.isfinite(float(rows[0][name])) for name in ("d_loss", "g_pix", "val_psnr"))
    report = (out / "report.md").read_text()
    assert f"batch {BATCH}" in report and f"{WORKERS} replica(s)" in report
    assert (out / "saved_model" / "saved_model.pb").is_file()
    metadata = json.loads((out / "saved_model" / "metadata.json").read_text())
    assert metadata["training"]["replicas"] == WORKERS


def test_the_other_worker_keeps_its_own_files_and_writes_no_run_outputs(two_worker_run):
    out, _ = two_worker_run
    worker = out / "worker-1"
    assert (worker / "config.json").is_file()
    assert tf.train.latest_checkpoint(str(worker / "checkpoints")).endswith(f"ckpt-{STEPS}")
    assert not (worker / "report.md").exists() and not (worker / "saved_model").exists()


def test_synchronous_training_leaves_both_workers_with_the_same_weights(two_worker_run):
    out, _ = two_worker_run
    chief = checkpoint_values(out / "checkpoints")
    other = checkpoint_values(out / "worker-1" / "checkpoints")
    assert any(name.startswith("g_optimizer/_trainable_variables/") for name in chief)
    assert chief.keys() == other.keys()
    # Each worker trained on its own half of every global batch (DATA auto-sharding), so only
    # all-reduced gradients make the weights, optimizer slots and step counters agree exactly.
    different = [name for name in chief if not np.array_equal(chief[name], other[name])]
    assert different == []
