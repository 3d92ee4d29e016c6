"""When each test file ran on which pytest worker, and how busy the machine's CPUs were meanwhile: tells whether
the suite's wall time is its CPU time over the cores (nothing to gain from ordering) or workers waiting on each other.

As a pytest plugin it appends one JSON line per test start and end (per xdist worker) and, from the controlling
process, the machine's busy CPU fraction every 5 s (from /proc/stat, so other processes on the machine count too):

    PYTHONPATH=tests/benchmarks PYTEST_ADDOPTS="-p suite_timeline" SUITE_TIMELINE=/tmp/timeline.jsonl make test

Then the files per worker, their spans, and the busy fraction per minute:

    .venv/bin/python tests/benchmarks/suite_timeline.py /tmp/timeline.jsonl
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time

OUT = os.environ.get("SUITE_TIMELINE", "suite_timeline.jsonl")
_record_tests = True  # False in xdist's controller, which sees every worker's tests too


def _write(event: dict) -> None:
    with open(OUT, "a") as f:
        f.write(json.dumps(event) + "\n")


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def pytest_runtest_logstart(nodeid, location):
    if _record_tests:
        _write({"w": _worker(), "id": nodeid, "ev": "start", "t": time.time()})


def pytest_runtest_logfinish(nodeid, location):
    if _record_tests:
        _write({"w": _worker(), "id": nodeid, "ev": "end", "t": time.time()})


def _cpu_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait


def pytest_configure(config):
    global _record_tests
    if "PYTEST_XDIST_WORKER" in os.environ:
        return
    _record_tests = not getattr(config.option, "numprocesses", None)

    def poll() -> None:
        total0, idle0 = _cpu_ticks()
        while True:
            time.sleep(5)
            total, idle = _cpu_ticks()
            _write({"ev": "cpu", "t": time.time(), "busy": 1 - (idle - idle0) / max(total - total0, 1)})
            total0, idle0 = total, idle

    threading.Thread(target=poll, daemon=True).start()


def report(path: str) -> None:
    with open(path) as f:
        events = [json.loads(line) for line in f]
    tests = [e for e in events if e["ev"] in ("start", "end")]
    cpu = [e for e in events if e["ev"] == "cpu"]
    t0 = min(e["t"] for e in tests)
    wall = max(e["t"] for e in tests) - t0
    print(f"wall {wall:.0f} s; CPUs busy {sum(c['busy'] for c in cpu) / max(len(cpu), 1):.2f} on average")
    spans: dict[str, dict[str, list[float]]] = collections.defaultdict(dict)
    for e in tests:
        span = spans[e["w"]].setdefault(e["id"].split("::")[0], [e["t"], e["t"]])
        span[0], span[1] = min(span[0], e["t"]), max(span[1], e["t"])
    for worker, files in sorted(spans.items()):
        print(f"{worker}: last test ends at {max(b for _, b in files.values()) - t0:.0f} s")
        for name, (a, b) in sorted(files.items(), key=lambda kv: kv[1][0]):
            print(f"  {a - t0:6.0f} {b - t0:6.0f} s  {b - a:5.0f} s  {name}")
    minutes: dict[int, list[float]] = collections.defaultdict(list)
    start = min(e["t"] for e in events)  # the first poll: pytest's collection comes before the first test
    for c in cpu:
        minutes[int((c["t"] - start) // 60)].append(c["busy"])
    print("busy per minute from the start:", " ".join(f"{sum(v) / len(v):.2f}" for _, v in sorted(minutes.items())))


if __name__ == "__main__":
    report(sys.argv[1])
