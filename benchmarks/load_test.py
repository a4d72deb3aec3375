"""Bounded gRPC load test of a served tfsynth model, with and without server-side batching.

Starts the dev PredictionService (``tests/dev_serving.py``: `tfsynth.clients.dev_servicer`, TF
Serving's rules, TF1 session loader, plus server-side batching) in a subprocess on 127.0.0.1,
runs CLIENTS threads x REQUESTS requests of one SIZE x SIZE slice each, and reports throughput, p50/p99 latency and errors; then the same
with ``--enable_batching --batching_parameters_file export/batching_parameters.txt``. Every
response is checked (shape, range, equal to a reference answer). Loopback only; every
request has a timeout and the whole run a deadline, so it always stops by itself.

    python benchmarks/load_test.py                       # default-size generator, random weights
    python benchmarks/load_test.py --model RUN_OR_BASE   # an exported model (base/<name> dir)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def export_random_model(base: Path, size: int, filters: int, blocks: int) -> Path:
    """Exports a randomly initialised generator (throughput does not depend on the weights)."""
    from tfsynth.models.generator import StarGANGenerator
    from tfsynth.savedmodel.io import write_saved_model

    generator = StarGANGenerator(filters=filters, residual_blocks=blocks)
    write_saved_model(generator, base / "tfsynth" / "1", {"image_size": size})
    return base / "tfsynth"


def start_server(model_dir: Path, batching: bool) -> tuple[subprocess.Popen, str]:
    command = [
        sys.executable,
        str(ROOT / "tests" / "dev_serving.py"),
        "--port",
        "0",
        "--model_base_path",
        str(model_dir),
    ]
    if batching:
        command += ["--enable_batching", "--batching_parameters_file", str(ROOT / "export" / "batching_parameters.txt")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError("dev server did not start")
    return process, json.loads(line)["grpc"]


def run_load(
    address: str, clients: int, requests: int, image: np.ndarray, reference: np.ndarray, timeout: float, deadline: float
):
    from tfsynth.clients.grpc_client import ServingError, SynthesisClient

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client_loop():
        with SynthesisClient(address, timeout=timeout, retries=0) as client:
            for _ in range(requests):
                if time.monotonic() > deadline:
                    with lock:
                        errors.append("run deadline reached")
                    return
                start = time.perf_counter()
                try:
                    out = client.synthesize(image, "t1", "t2", normalized=True)
                    ok = out.shape == reference.shape and float(np.abs(out - reference).max()) < 1e-4
                    problem = None if ok else "wrong output"
                except ServingError as error:
                    problem = error.code
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if problem:
                        errors.append(problem)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "seconds": round(elapsed, 2),
        "throughput_rps": round(len(latencies) / elapsed, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="TF Serving model dir <base>/<name> (default: export a random model)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--size", type=int, default=240, help="slice height = width")
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--residual-blocks", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="deadline for each mode")
    parser.add_argument("--modes", default="no-batching,batching")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from tfsynth.clients.grpc_client import SynthesisClient

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = (
            Path(args.model)
            if args.model
            else export_random_model(Path(tmp), args.size, args.filters, args.residual_blocks)
        )
        rng = np.random.default_rng(0)
        image = rng.uniform(0.0, 1.0, (1, args.size, args.size)).astype(np.float32)
        results = {
            "setup": {
                "clients": args.clients,
                "requests_per_client": args.requests,
                "slice": [args.size, args.size],
                "signature": "synthesize_normalized",
                "model": str(args.model)
                if args.model
                else f"random generator filters={args.filters} blocks={args.residual_blocks}",
                "cpus": os.cpu_count(),
            }
        }
        reference = None
        for mode in args.modes.split(","):
            process, address = start_server(model_dir, batching=(mode == "batching"))
            try:
                with SynthesisClient(address, timeout=args.timeout, retries=5) as warmup:
                    answer = warmup.synthesize(image, "t1", "t2", normalized=True)  # loads the model, traces the graph
                reference = answer if reference is None else reference
                deadline = time.monotonic() + args.max_minutes * 60
                results[mode] = run_load(address, args.clients, args.requests, image, reference, args.timeout, deadline)
            finally:
                process.terminate()
                process.wait(timeout=30)
            print(f"{mode:>12}: {json.dumps(results[mode])}", flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(results[m]["errors"] == 0 for m in args.modes.split(",")) else 1


if __name__ == "__main__":
    sys.exit(main())
