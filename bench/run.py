"""Benchmark harness: latency, throughput, memory and cold start of ours vs the floor vs naive.

    scripts/bench            # full mode (~50 min on 2 cores)
    scripts/bench --quick    # quick mode (~7 min): fewer samples, 5 s wrk runs, 10,000-request memory run
    scripts/bench profile synthea-Clair921   # pyinstrument profile of one scenario, in process

Absolute times depend on the machine and on whatever else runs on it; the targets are ratios
measured in the same run (ours/floor, naive/ours), which noise moves much less.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench import servers
from bench.bodies import CURVES, BenchRequest, build, curve_scenarios, load_case, mixed, scenarios
from bench.load import latencies, write_manifest, wrk

TARGETS = {
    "ours/floor p50": 1.5,  # large Synthea bundles
    "naive/ours p50": 5.0,
    "relevant-2000 ours/floor": 3.0,
    "relevant-2000 naive/ours": 5.0,
    "growth exponent": 1.05,
    "tail p99/p50": 2.5,  # ours at one connection (run_tail)
    "throughput ours/floor": 0.7,  # Synthea bodies at THROUGHPUT_CONNECTIONS
    "worker balance": 0.8,  # the least busy worker's share of the CPU, times the number of workers
    "cold start s": 1.0,  # median
    "rss growth": 0.05,
    "memory returned": 1.2,  # a worker's RSS after a 17 MB body / before it
}


THROUGHPUT_CONNECTIONS = (8, 32)
TAIL_SCENARIOS = ("small", "typical")  # fixed cost of a call: where a stall shows most


def fired(answer: dict[str, Any]) -> list[str]:
    return sorted({r for c in answer.get("cards", []) for r in c["extension"]["org.spinecds.trace"]["rules"]})


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def machine() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    load = Path("/proc/loadavg").read_text().split()[:3]
    cores = len(os.sched_getaffinity(0))
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, load average {' '.join(load)}"


def run_latency(args: argparse.Namespace, work: Path, reqs: list[BenchRequest], out: dict[str, Any]) -> None:
    started: list[servers.Server] = []
    try:
        for kind in ("ours", "floor", "naive"):
            started.append(servers.start(kind, work, args.workers, args.threads, args.database_url))
        urls = {s.kind: s.url for s in started}
        for req in [] if args.skip_latency else reqs:
            large = req.resources > 1000
            n = args.large_samples if large else args.samples
            if req.resources > 10_000:
                n = max(3, args.large_samples // 3)  # the 20,000-resource curve points (naive: seconds per call)
            lat, answers = latencies(urls, req, n, warmup=3 if large else 10)
            bare = build("bare", load_case(args.case), [], None)
            _, bare_answer = latencies({"ours": urls["ours"]}, bare, 1, 0)
            row = {
                "scenario": req.name,
                "resources": req.resources,
                "body_kb": len(req.encoded()) // 1024,
                **{f"{k}_p50": v.p50_ms for k, v in lat.items()},
                **{f"{k}_p99": v.p99_ms for k, v in lat.items()},
                "n": n,
                "cards": len(answers["ours"]["cards"]),
                "rules": len(fired(answers["ours"])),
                "same_as_bare": fired(answers["ours"]) == fired(bare_answer["ours"]),
            }
            row["ours/floor"] = row["ours_p50"] / row["floor_p50"]
            row["naive/ours"] = row["naive_p50"] / row["ours_p50"]
            out["latency"].append(row)
            print(
                f"  latency {req.name}: ours {row['ours_p50']:.1f} ms, floor {row['floor_p50']:.1f} ms, "
                f"naive {row['naive_p50']:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
        if not args.skip_tail:
            run_tail(args, reqs, {k: v for k, v in urls.items() if k != "naive"}, out)
        if not args.skip_throughput:
            run_throughput(args, work, reqs, {s.kind: s for s in started}, out)
    finally:
        for s in started:
            s.stop()


def run_tail(args: argparse.Namespace, reqs: list[BenchRequest], urls: dict[str, str], out: dict[str, Any]) -> None:
    """p99/p50 of many sequential calls at one connection (ours and the floor, interleaved): enough samples
    that p99 is not simply the slowest call. The floor's ratio is what the machine's own noise gives."""
    for req in (r for r in reqs if r.name in TAIL_SCENARIOS):
        lat, _ = latencies(urls, req, args.tail_samples, warmup=10)
        row = {"scenario": req.name, "n": args.tail_samples}
        for kind, v in lat.items():
            row[kind] = {"p50": v.p50_ms, "p99": v.p99_ms, "tail": v.p99_ms / v.p50_ms}
        out["tail"].append(row)
        print(
            f"  tail {req.name}: ours p99/p50 {row['ours']['tail']:.2f}, floor {row['floor']['tail']:.2f}",
            file=sys.stderr,
            flush=True,
        )


def run_throughput(
    args: argparse.Namespace, work: Path, reqs: list[BenchRequest], srv: dict[str, servers.Server], out: dict[str, Any]
) -> None:
    loads = {
        "typical": [r for r in reqs if r.name == "typical"],
        "synthea (both bundles)": [r for r in reqs if r.name.startswith("synthea-")],
    }
    for load_name, load_reqs in loads.items():
        manifest = write_manifest(load_reqs, work, load_name.split()[0])
        for conns in THROUGHPUT_CONNECTIONS:
            results = {}
            split: list[float] = []
            for kind in ("ours", "floor"):
                # 32 queued 2 MB requests need seconds before the first one is answered
                seconds = args.duration if load_name == "typical" or not args.quick else max(args.duration, 20)
                before = srv[kind].worker_cpu_seconds()
                results[kind] = wrk(srv[kind].url, manifest, conns, seconds)
                if kind == "ours":  # worker balance: each worker's share of the CPU the run used
                    used = {pid: t - before.get(pid, 0) for pid, t in srv[kind].worker_cpu_seconds().items()}
                    total = sum(used.values()) or 1
                    split = sorted((u / total for u in used.values()), reverse=True)
                print(
                    f"  wrk {load_name} c={conns} {kind}: {results[kind].rps:.1f} req/s, "
                    f"p99 {results[kind].p99_ms:.0f} ms, errors {results[kind].errors}",
                    file=sys.stderr,
                    flush=True,
                )
            out["throughput"].append(
                {
                    "load": load_name,
                    "connections": conns,
                    "seconds": seconds,
                    **{kind: asdict(r) for kind, r in results.items()},
                    "ratio": results["ours"].rps / results["floor"].rps if results["floor"].rps else 0.0,
                    "ours_worker_cpu_split": split,
                }
            )


def run_memory(args: argparse.Namespace, work: Path, out: dict[str, Any]) -> None:
    manifest = write_manifest(mixed(), work, "mixed")
    server = servers.start("ours", work, args.workers, args.threads, args.database_url)
    try:
        first = wrk(server.url, manifest, 8, 3600, limit=1000)
        rss_first = server.worker_rss_kib()
        half = (args.memory_requests - 1000) // 2
        middle = wrk(server.url, manifest, 8, 3600, limit=half)
        rss_middle = server.worker_rss_kib()
        rest = wrk(server.url, manifest, 8, 3600, limit=args.memory_requests - 1000 - half)
        rss_after = server.worker_rss_kib()
    finally:
        server.stop()
    total_first, total_after = sum(rss_first.values()), sum(rss_after.values())
    out["memory"] = {
        "requests": first.requests + middle.requests + rest.requests,
        "planned": args.memory_requests,
        "errors": first.errors + middle.errors + rest.errors,
        "rss_first_kib": rss_first,
        "rss_middle_kib": rss_middle,
        "middle_requests": first.requests + middle.requests,
        "rss_after_kib": rss_after,
        "growth": total_after / total_first - 1 if total_first else 0.0,
        "same_workers": sorted(rss_first) == sorted(rss_after),
    }
    print(f"  memory: {total_first / 1024:.0f} MiB -> {total_after / 1024:.0f} MiB", file=sys.stderr, flush=True)


MEMORY_RETURN_BODY_MB = 17  # the body of issue 20: after it each worker stayed at ~347 MiB for good


def run_memory_return(args: argparse.Namespace, work: Path, out: dict[str, Any]) -> None:
    """Memory per request returned: one fresh worker's RSS after warm-up calls (baseline), then one ~17 MB body,
    then a few small calls, then its RSS again (target: within 20 % of the baseline)."""
    import requests

    from bench.bodies import generated_observations
    from bench.load import HEADERS

    case = load_case(args.case)
    patient_id = next(r["id"] for r in case["resources"] if r["resourceType"] == "Patient")
    n = MEMORY_RETURN_BODY_MB * 2300  # ~440 bytes per generated Observation
    big = build(f"memory-{n}", case, generated_observations(n, patient_id, datetime.now(UTC), relevant=0.5))
    small = next(r for r in scenarios(case_name=args.case) if r.name == "typical")
    big_body, small_body = big.encoded(), small.encoded()
    server = servers.start("ours", work, 1, args.threads, args.database_url)
    try:
        with requests.Session() as session:

            def post(req: BenchRequest, body: bytes) -> None:
                answer = session.post(server.url + req.path, data=body, headers=HEADERS, timeout=300)
                if answer.status_code != 200:
                    raise RuntimeError(f"ours answered {answer.status_code} to {req.name}: {answer.text[:300]}")

            for _ in range(20):
                post(small, small_body)
            baseline = sum(server.worker_rss_kib().values())
            post(big, big_body)
            for _ in range(5):
                post(small, small_body)
            time.sleep(0.5)
            after = sum(server.worker_rss_kib().values())
    finally:
        server.stop()
    out["memory_return"] = {
        "body_bytes": len(big_body),
        "resources": big.resources,
        "baseline_kib": baseline,
        "after_kib": after,
        "ratio": after / baseline if baseline else 0.0,
    }
    print(
        f"  memory returned: {baseline / 1024:.0f} MiB -> {after / 1024:.0f} MiB after one "
        f"{len(big_body) / 1e6:.1f} MB body (x{after / baseline:.2f})",
        file=sys.stderr,
        flush=True,
    )


def memory_return_lines(out: dict[str, Any]) -> list[str]:
    m = out.get("memory_return")
    if not m:
        return []
    return [
        "",
        "### Memory returned after a large body (one fresh worker)",
        "",
        f"- RSS after warm-up {m['baseline_kib'] / 1024:.1f} MiB; after one {m['body_bytes'] / 1e6:.1f} MB body "
        f"({m['resources']:,} resources) and 5 small calls {m['after_kib'] / 1024:.1f} MiB: x{m['ratio']:.2f} "
        f"({mark(m['ratio'] <= TARGETS['memory returned'])}; target ≤ x{TARGETS['memory returned']:.1f})",
    ]


def run_cold_start(args: argparse.Namespace, work: Path, probe: BenchRequest, out: dict[str, Any]) -> None:
    times = []
    for _ in range(args.cold_starts):
        server = servers.start(
            "ours", work, args.workers, args.threads, args.database_url, probe=probe.encoded(), probe_path=probe.path
        )
        times.append(server.ready_after or 0.0)
        server.stop()
    out["cold_start"] = {"runs": times, "median": statistics.median(times), "max": max(times)}
    print(f"  cold start: {', '.join(f'{t:.2f}' for t in times)} s", file=sys.stderr, flush=True)


def table(out: dict[str, Any]) -> str:
    lines = [f"machine: {out['machine']}", f"date: {out['date']}  mode: {out['mode']}  command: {out['command']}", ""]
    lines += targets_table(out)
    lines += (
        [
            "### Latency (sequential client, p50 / p99 ms)",
            "",
            "| scenario | resources | KiB | ours | floor | naive | ours/floor p50 | naive/ours p50 | ours p99/p50 | n "
            "| rules fired (= bare case) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        if out["latency"]
        else []
    )
    for r in out["latency"]:
        if r["scenario"] == "relevant-2000":
            of_target, no_target = TARGETS["relevant-2000 ours/floor"], TARGETS["relevant-2000 naive/ours"]
        elif r["scenario"].startswith("synthea-"):
            of_target, no_target = TARGETS["ours/floor p50"], TARGETS["naive/ours p50"]
        else:
            of_target = no_target = 0.0
        of = f"{r['ours/floor']:.2f}" + (f" ({mark(r['ours/floor'] <= of_target)})" if of_target else "")
        no = f"{r['naive/ours']:.1f}" + (f" ({mark(r['naive/ours'] >= no_target)})" if no_target else "")
        lines.append(
            f"| {r['scenario']} | {r['resources']} | {r['body_kb']} | {r['ours_p50']:.1f} / {r['ours_p99']:.1f} "
            f"| {r['floor_p50']:.1f} / {r['floor_p99']:.1f} | {r['naive_p50']:.1f} / {r['naive_p99']:.1f} "
            f"| {of} | {no} | {r['ours_p99'] / r['ours_p50']:.2f} | {r['n']} "
            f"| {r['rules']} ({'yes' if r['same_as_bare'] else 'NO'}) |"
        )
    lines += growth_table(out["latency"])
    if out.get("tail"):
        lines += [
            "",
            "### Tail (one connection, sequential calls; the floor's p99/p50 is the machine's own noise)",
            "",
            "| scenario | n | ours p50 / p99 ms | ours p99/p50 | floor p50 / p99 ms | floor p99/p50 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in out["tail"]:
            o, f = r["ours"], r["floor"]
            lines.append(
                f"| {r['scenario']} | {r['n']} | {o['p50']:.1f} / {o['p99']:.1f} "
                f"| {o['tail']:.2f} ({mark(o['tail'] <= TARGETS['tail p99/p50'])}) "
                f"| {f['p50']:.1f} / {f['p99']:.1f} | {f['tail']:.2f} |"
            )
    if out["throughput"]:
        lines += [
            "",
            "### Throughput (wrk, gunicorn production config)",
            "",
            "| load | conns | s | ours req/s | ours p99 ms | ours errors | floor req/s | floor p99 ms | floor errors "
            "| ours/floor | ours worker CPU split (balance) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for t in out["throughput"]:
            o, f = t["ours"], t["floor"]
            target = t["load"].startswith("synthea")
            ratio = f"{t['ratio']:.0%}" + (
                f" ({mark(t['ratio'] >= TARGETS['throughput ours/floor'])})" if target else ""
            )
            kinds = ", ".join(f"{k} {v}" for k, v in o["detail"].items() if v)
            err = (
                f"{o['errors']}" + (f" [{kinds}]" if kinds else "") + (f" ({mark(o['errors'] == 0)})" if target else "")
            )
            split = t.get("ours_worker_cpu_split", [])
            balance = f" ({mark(balanced(split, out.get('workers', len(split))))})" if split else ""
            lines.append(
                f"| {t['load']} | {t['connections']} | {t['seconds']:g} | {o['rps']:.1f} | {o['p99_ms']:.0f} | {err} "
                f"| {f['rps']:.1f} | {f['p99_ms']:.0f} | {f['errors']} | {ratio} "
                f"| {' / '.join(f'{x:.0%}' for x in split)}{balance} |"
            )
    if out.get("memory"):
        m = out["memory"]
        first, after = sum(m["rss_first_kib"].values()) / 1024, sum(m["rss_after_kib"].values()) / 1024
        middle = sum(m["rss_middle_kib"].values()) / 1024
        note = "" if m["planned"] >= 100_000 else f" (quick mode: {m['planned']:,} requests, not 100,000)"
        lines += [
            "",
            "### Memory (mixed requests, RSS of all gunicorn workers)",
            "",
            f"- after 1,000: {first:.1f} MiB; after {m['middle_requests']:,}: {middle:.1f} MiB; "
            f"after {m['requests']:,}: {after:.1f} MiB; second half {after / middle - 1:+.1%}; "
            f"growth vs 1,000 {m['growth']:+.1%} "
            f"({mark(m['growth'] <= TARGETS['rss growth'])}; target ≤ +5%){note}; errors {m['errors']}; "
            f"same worker processes: {'yes' if m['same_workers'] else 'NO (a worker was restarted)'}",
        ]
    if out.get("cold_start"):
        c = out["cold_start"]
        lines += [
            "",
            "### Cold start (`spinecds serve` start to first 200 of a service call)",
            "",
            f"- runs: {', '.join(f'{t:.2f}' for t in c['runs'])} s; median {c['median']:.2f} s, max {c['max']:.2f} s "
            f"({mark(c['median'] <= TARGETS['cold start s'])}; target: median ≤ {TARGETS['cold start s']:g} s)",
        ]
    lines += memory_return_lines(out)
    return "\n".join(lines)


def balanced(split: list[float], workers: int) -> bool:
    """Every worker busy: the least busy one's CPU share at least ``TARGETS['worker balance']`` of a fair share."""
    return len(split) == workers and min(split) * workers >= TARGETS["worker balance"]


def targets_table(out: dict[str, Any]) -> list[str]:
    """One row per issue-20 target that this run measured: the figure, the target, met or missed."""
    rows: list[tuple[str, str, str, bool]] = []
    lat = {r["scenario"]: r for r in out["latency"]}
    synthea = [r for name, r in lat.items() if name.startswith("synthea-")]
    if synthea:
        worst = max(r["ours/floor"] for r in synthea)
        rows.append(("large Synthea bundles: ours/floor p50 (worst)", f"{worst:.2f}", "≤ 1.5", worst <= 1.5))
    if "relevant-2000" in lat:
        r = lat["relevant-2000"]
        rows.append(("relevant-2000: ours/floor p50", f"{r['ours/floor']:.2f}", "≤ 3", r["ours/floor"] <= 3))
        rows.append(("relevant-2000: naive/ours p50", f"{r['naive/ours']:.1f}", "≥ 5", r["naive/ours"] >= 5))
    for curve in CURVES:
        points = sorted((r for n, r in lat.items() if n.startswith(f"{curve}-")), key=lambda r: r["resources"])
        if len(points) >= 2:
            e = exponent([(r["resources"], r["ours_p50"]) for r in points])
            label = f"growth exponent, {curve}-N ({points[0]['resources']:,} → {points[-1]['resources']:,})"
            rows.append((label, f"{e:.2f}", "≤ 1.05", e <= TARGETS["growth exponent"]))
    for r in out.get("tail", []):
        t = r["ours"]["tail"]
        label = f"tail: ours p99/p50, {r['scenario']}, one connection, n={r['n']}"
        rows.append((label, f"{t:.2f} (floor {r['floor']['tail']:.2f})", "≤ 2.5", t <= TARGETS["tail p99/p50"]))
    for t in out["throughput"]:
        if t["load"].startswith("synthea"):
            label = f"throughput ours/floor, Synthea, {t['connections']} connections"
            rows.append((label, f"{t['ratio']:.2f}", "≥ 0.7", t["ratio"] >= TARGETS["throughput ours/floor"]))
        split = t.get("ours_worker_cpu_split", [])
        if split:
            label = f"worker balance, {t['load']}, {t['connections']} connections (CPU share per worker)"
            fair = f"each ≥ {TARGETS['worker balance'] / len(split):.0%}"
            rows.append((label, " / ".join(f"{x:.0%}" for x in split), fair, balanced(split, out["workers"])))
    if out["throughput"]:
        errors = sum(t["ours"]["errors"] for t in out["throughput"])
        rows.append(("errors under load (ours)", str(errors), "0", errors == 0))
    if out.get("cold_start"):
        median = out["cold_start"]["median"]
        rows.append(("cold start median (spinecds serve to first 200)", f"{median:.2f} s", "≤ 1.0 s", median <= 1.0))
    if not rows:
        return []
    lines = ["### Targets (issue 20)", "", "| target | figure | goal | |", "|---|---:|---:|---|"]
    lines += [f"| {label} | {figure} | {goal} | {mark(ok)} |" for label, figure, goal, ok in rows]
    return [*lines, ""]


def exponent(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of log(time) over log(size): 1 is linear growth."""
    xs, ys = [math.log(n) for n, _ in points], [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def growth_table(latency: list[dict[str, Any]]) -> list[str]:
    """Both curves side by side: p50 per size, ratios, and the growth exponent of ours and of the floor."""
    rows = {r["scenario"]: r for r in latency}
    lines: list[str] = []
    for curve in CURVES:
        points = sorted(
            (r for name, r in rows.items() if name.startswith(f"{curve}-") and name[len(curve) + 1 :].isdigit()),
            key=lambda r: r["resources"],
        )
        if len(points) < 2:
            continue
        if not lines:
            lines += [
                "",
                "### Growth (p50 ms by resources; exponent = slope of log p50 over log resources)",
                "",
                "| curve | "
                + " | ".join(f"{r['resources']:,}" for r in points)
                + " | exponent ours | exponent floor |",
                "|---|" + "---:|" * (len(points) + 2),
            ]
        ours = exponent([(r["resources"], r["ours_p50"]) for r in points])
        floor = exponent([(r["resources"], r["floor_p50"]) for r in points])
        cells = " | ".join(
            f"{r['ours_p50']:.0f} (floor {r['floor_p50']:.0f}, ×{r['ours/floor']:.2f}; naive ×{r['naive/ours']:.1f})"
            for r in points
        )
        lines.append(f"| {curve} | {cells} | {ours:.2f} ({mark(ours <= TARGETS['growth exponent'])}) | {floor:.2f} |")
    return lines


def bench(args: argparse.Namespace) -> int:
    if args.quick:
        args.samples, args.large_samples, args.duration = (
            args.samples or 40,
            args.large_samples or 12,
            args.duration or 5,
        )
        args.memory_requests, args.cold_starts = args.memory_requests or 3_000, args.cold_starts or 3
        args.tail_samples = args.tail_samples or 200
    else:
        args.samples, args.large_samples, args.duration = (
            args.samples or 200,
            args.large_samples or 50,
            args.duration or 60,
        )
        args.memory_requests, args.cold_starts = args.memory_requests or 100_000, args.cold_starts or 5
        args.tail_samples = args.tail_samples or 1000
    out: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick" if args.quick else "full",
        "command": "scripts/bench " + " ".join(sys.argv[1:]),
        "latency": [],
        "tail": [],
        "throughput": [],
        "workers": args.workers,
    }
    reqs = scenarios(case_name=args.case) + ([] if args.skip_curves else curve_scenarios(case_name=args.case))
    if args.only:
        reqs = [r for r in reqs if r.name in args.only]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spinecds-bench-") as tmp:
        work = Path(tmp)
        run_latency(args, work, reqs, out)
        if not args.skip_memory:
            run_memory(args, work, out)
        if not args.skip_memory_return:
            run_memory_return(args, work, out)
        if not args.skip_cold_start:
            run_cold_start(args, work, reqs[0], out)
    out["elapsed_s"] = time.perf_counter() - t0
    text = table(out)
    print(text)
    print(f"\n(elapsed {out['elapsed_s'] / 60:.1f} min)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


def profile(args: argparse.Namespace) -> int:
    """Profile our pipeline in process on one scenario (pyinstrument), and print where time goes."""
    from pyinstrument import Profiler

    from service.app import create_app

    every = scenarios(case_name=args.case) + curve_scenarios(case_name=args.case)  # relevant-2000 too
    req = next(r for r in every if r.name == args.scenario)
    body = req.encoded()
    with tempfile.TemporaryDirectory(prefix="spinecds-prof-") as tmp:
        app = create_app({"database_url": f"sqlite:///{tmp}/p.db", "log_level": "WARNING"})
        with app.test_client() as client:
            for _ in range(3):
                assert client.post(req.path, data=body, content_type="application/json").status_code == 200
            profiler = Profiler(interval=0.0005)
            started = time.perf_counter()
            with profiler:
                for _ in range(args.n):
                    client.post(req.path, data=body, content_type="application/json")
            per = (time.perf_counter() - started) / args.n * 1000
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    print(f"{req.name}: {req.resources} resources, {per:.1f} ms per call in process (profiled)")
    return 0


def breakdown(args: argparse.Namespace) -> int:
    """Where a call's time goes, stage by stage, in process (best of n: little moved by other load)."""
    from bench.naive import validate_all
    from service.cds.assemble import build_pipeline
    from service.cds.definitions import SERVICES
    from service.cds.prefetch import gather
    from service.cds.request import parse_hook_request
    from service.cds.strict_json import parse_json_body
    from service.config import Settings

    def best(fn: Any) -> float:
        times = []
        for _ in range(args.n):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times) * 1000

    rows = [
        "| scenario | json.loads (floor) | strict parse (strict_json.py) | hook request | prefetch pool | "
        "facts+rules+cards | ours total w/o HTTP, DB | naive validation |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pipeline = build_pipeline(Settings.from_env())  # the app's pipeline; the scenarios carry their data in prefetch
    gc.freeze()  # as the gunicorn master does (service/serving.py)
    reqs = curve_scenarios(case_name=args.case) if args.curves else scenarios(case_name=args.case)
    for req in reqs:
        if args.only and req.name not in args.only:
            continue
        data = req.encoded()
        body = json.loads(data)
        hook = parse_hook_request(body, SERVICES[req.service])
        prefetch = gather(hook, pipeline.limits, pipeline.relevant)
        t = {
            "loads": best(partial(json.loads, data)),
            "strict": best(partial(parse_json_body, data)),
            "hook": best(partial(parse_hook_request, body, SERVICES[req.service])),
            "pool": best(partial(_fresh_gather, hook, pipeline)),
            "decide": best(partial(pipeline.decide, prefetch, [], hook.patient_id)),
            "naive": best(partial(validate_all, body)) if not args.skip_naive else float("nan"),
        }
        total = t["strict"] + t["hook"] + t["pool"] + t["decide"]
        rows.append(
            f"| {req.name} ({req.resources}) | {t['loads']:.1f} | {t['strict']:.1f} | {t['hook']:.1f} "
            f"| {t['pool']:.1f} | {t['decide']:.1f} | {total:.1f} | {t['naive'] + t['loads']:.1f} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))
    print(f"\nms, best of {args.n}; naive validation includes json.loads")
    return 0


def _fresh_gather(hook: Any, pipeline: Any) -> Any:
    """The intake as a service call pays it: readable's memos start empty (the service empties them after each
    call's intake, ``Pipeline.run``)."""
    from service.cds.prefetch import gather
    from service.fhir import readable

    readable.forget()
    return gather(hook, pipeline.limits, pipeline.relevant)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs (~4 min) instead of the full ones (~25 min)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn workers (default: cores)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (default 4)")
    parser.add_argument("--database-url", help="SPINECDS_DATABASE_URL for ours (default: a fresh SQLite file)")
    parser.add_argument("--case", default="cat-rt-02-va-31-worked-example", help="patient case to pad (tests/cases)")
    parser.add_argument("--only", nargs="*", help="latency scenarios to run (small typical synthea-... obs-5000)")
    parser.add_argument("--samples", type=int, default=0, help="timed calls per small/typical scenario")
    parser.add_argument("--large-samples", type=int, default=0, help="timed calls per large scenario")
    parser.add_argument("--duration", type=float, default=0, help="seconds per wrk run")
    parser.add_argument("--memory-requests", type=int, default=0)
    parser.add_argument("--cold-starts", type=int, default=0)
    parser.add_argument("--skip-latency", action="store_true", help="no latency scenarios and growth curves")
    parser.add_argument("--skip-tail", action="store_true", help="no tail phase (p99/p50 over many calls)")
    parser.add_argument("--tail-samples", type=int, default=0, help="calls per tail scenario (quick 200, full 1000)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-curves", action="store_true", help="no relevant-N / irrelevant-N growth curves")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-cold-start", action="store_true")
    parser.add_argument(
        "--skip-memory-return", action="store_true", help="no RSS check after one ~17 MB body (a fresh worker)"
    )
    parser.add_argument("--json", help="also write the raw results here")
    sub = parser.add_subparsers(dest="command")
    prof = sub.add_parser("profile", help="pyinstrument profile of one scenario, in process")
    prof.add_argument("scenario")
    prof.add_argument("-n", type=int, default=20)
    stages = sub.add_parser("breakdown", help="time per pipeline stage for every scenario, in process")
    stages.add_argument("-n", type=int, default=5)
    stages.add_argument("--curves", action="store_true", help="the growth curves instead of the latency scenarios")
    stages.add_argument("--only", nargs="*", help="scenarios to run")
    stages.add_argument("--skip-naive", action="store_true", help="no naive validation column (slow on big bodies)")
    args = parser.parse_args(argv)
    if args.command == "profile":
        return profile(args)
    if args.command == "breakdown":
        return breakdown(args)
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
