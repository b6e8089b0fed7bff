#!/usr/bin/env python3
"""Runs the workspace's test binaries, several at a time, and reports like `cargo test`.

Why: `cargo test` runs one test binary after another. Most of this workspace's integration
tests spend their time waiting on real servers (influxd, moto, the functions under cargo lambda
watch), so on a 2-core machine running a few binaries at once cuts the wall time without
weakening any test: each binary still runs its tests exactly as `cargo test` would (same
arguments, its package directory as working directory, its own test threads).

Usage: run_tests.py [--jobs N] [-- <arguments for every test binary>]

The binaries come from `cargo test --workspace --no-run --message-format=json`. Each binary's
output is kept in a file and printed whole when it finishes, so outputs never interleave. The
slowest binaries start first (their last full run's time, kept in target/test-times.json; on a
fresh clone, the integration tests), so the run ends as early as it can. Exit status: 0 when every binary passed, 101 otherwise; the
failing binaries are listed at the end.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed


def test_binaries():
    """(name, executable, package directory) of every test target, as cargo builds them."""
    out = subprocess.run(
        ["cargo", "test", "--workspace", "--no-run", "--message-format=json"],
        check=True,
        stdout=subprocess.PIPE,
    ).stdout.decode()
    found = []
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("profile", {}).get("test"):
            continue
        exe = msg.get("executable")
        if not exe:
            continue
        target = msg["target"]
        kind = target["kind"][0]
        package_dir = os.path.dirname(msg["manifest_path"])
        package = os.path.basename(package_dir)
        found.append((f"{package} {kind} {target['name']}", exe, package_dir))
    return found


def main():
    args = sys.argv[1:]
    jobs = 3
    if len(args) >= 2 and args[0] == "--jobs":
        jobs = max(1, int(args[1]))
        args = args[2:]
    if args and args[0] == "--":
        args = args[1:]
    root = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"], check=True, stdout=subprocess.PIPE
    )
    target_dir = json.loads(root.stdout)["target_directory"]
    times_file = os.path.join(target_dir, "test-times.json")
    try:
        with open(times_file) as f:
            last = json.load(f)
    except (OSError, ValueError):
        last = {}
    # Without a last time (a fresh clone), the integration tests against real servers (the
    # testbed package's tests) are the slow ones: they go first.
    binaries = sorted(
        test_binaries(), key=lambda b: -last.get(b[0], 120.0 if b[0].startswith("testbed test") else 1.0)
    )
    print(f"running {len(binaries)} test binaries, {jobs} at a time", flush=True)
    lock = threading.Lock()
    logs = tempfile.mkdtemp(prefix="test-logs-")
    results = {}
    counts = {"passed": 0, "failed": 0}

    def run(binary):
        name, exe, cwd = binary
        log = os.path.join(logs, name.replace(" ", "_").replace("/", "_") + ".log")
        started = time.monotonic()
        with open(log, "wb") as out:
            code = subprocess.call([exe, *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        elapsed = time.monotonic() - started
        with open(log, "rb") as f:
            text = f.read().decode(errors="replace")
        with lock:
            for passed, failed in re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed", text):
                counts["passed"] += int(passed)
                counts["failed"] += int(failed)
            print(f"\n     Running {name} ({exe}): {'ok' if code == 0 else 'FAILED'} in {elapsed:.1f} s")
            print(text, end="" if text.endswith("\n") else "\n", flush=True)
        return name, code, elapsed

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for done in as_completed([pool.submit(run, b) for b in binaries]):
            name, code, elapsed = done.result()
            results[name] = (code, elapsed)

    # Doc tests are not in the binaries above.
    doc = subprocess.call(["cargo", "test", "--workspace", "--doc", "--", *args])
    results["doc tests"] = (doc, 0.0)

    if not args:  # a filtered run's times say nothing of the full run
        try:
            with open(times_file, "w") as f:
                json.dump({n: e for n, (_, e) in results.items()}, f)
        except OSError:
            pass
    failed = sorted(n for n, (c, _) in results.items() if c != 0)
    print()
    print(f"{counts['passed']} tests passed, {counts['failed']} failed, in {len(binaries)} test binaries (doc tests apart)")
    if failed:
        print("failing test binaries (their output is above):")
        for n in failed:
            print(f"    {n}")
        return 101
    return 0


if __name__ == "__main__":
    sys.exit(main())
