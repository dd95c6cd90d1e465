"""Load generators: a sequential latency client (Python) and wrk for concurrent throughput."""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.bodies import BenchRequest

LUA = Path(__file__).resolve().parent / "wrk.lua"
HEADERS = {"Content-Type": "application/json"}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    mean_ms: float
    n: int


def latencies(
    urls: dict[str, str], req: BenchRequest, n: int, warmup: int
) -> tuple[dict[str, Latency], dict[str, Any]]:
    """Time ``n`` sequential calls of ``req`` per target, round-robin so noise hits all targets alike.

    Returns latency per target and each target's last JSON answer (for checks).
    """
    body = req.encoded()
    times: dict[str, list[float]] = {k: [] for k in urls}
    answers: dict[str, Any] = {}
    sessions = {k: requests.Session() for k in urls}
    try:
        for i in range(warmup + n):
            for kind, url in urls.items():
                started = time.perf_counter()
                r = sessions[kind].post(url + req.path, data=body, headers=HEADERS, timeout=120)
                elapsed = time.perf_counter() - started
                if r.status_code != 200:
                    raise RuntimeError(f"{kind} answered {r.status_code} to {req.name}: {r.text[:300]}")
                if i >= warmup:
                    times[kind].append(elapsed * 1000)
                answers[kind] = r.json()
    finally:
        for s in sessions.values():
            s.close()
    out = {k: Latency(percentile(v, 50), percentile(v, 99), statistics.fmean(v), len(v)) for k, v in times.items()}
    return out, answers


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    detail: dict[str, int]


def write_manifest(reqs: list[BenchRequest], workdir: Path, name: str) -> Path:
    lines = []
    for i, req in enumerate(reqs):
        body = workdir / f"{name}-{i}.json"
        body.write_bytes(req.encoded())
        lines.append(f"{req.path}\t{body}")
    manifest = workdir / f"{name}.manifest"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def wrk(url: str, manifest: Path, connections: int, seconds: float, threads: int = 1, limit: int = 0) -> WrkResult:
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    env = {**os.environ, "BENCH_MANIFEST": str(manifest), "BENCH_LIMIT": str(limit)}
    cmd = [
        exe,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "60s",
        "-s",
        str(LUA),
        url,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    data = json.loads(line.removeprefix("BENCH "))
    detail = {k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout")}
    secs = data["duration_us"] / 1e6
    return WrkResult(
        data["requests"],
        secs,
        data["requests"] / secs,
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        sum(detail.values()),
        detail,
    )
