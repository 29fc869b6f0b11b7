#!/usr/bin/env python3
"""meshscrape-gen and meshscrape-verify over many namespaces: wall time and peak memory.

For each namespace count it runs, in one sitting and alternating nothing else:
  gen       meshscrape-gen --config examples/identity-service.yaml --namespace ns-0 ... > FILE
  gen --out the same, written as one folder per namespace
  verify    meshscrape-verify manifests FILE (the stream gen wrote)
each --runs times, and reports the median wall time, the largest peak RSS (from wait4, so the
child's own high-water mark), and time and memory per namespace. Times are this machine's on this
day; the per-namespace columns show how each tool scales, which is what the table is for.

Usage (release builds):
  cargo build --release -p meshscrape-gen -p meshscrape-verify
  bench/scale.py [--counts 10,100,1000,5000] [--runs 3] [--json FILE]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, stdout):
    """Wall seconds and peak RSS in KiB of one run; exits on failure.

    Peak RSS comes from GNU time (`time` package), not from this process's wait4: a child forked
    from Python carries Python's own resident set into its high-water mark until it execs."""
    with tempfile.NamedTemporaryFile() as peak, tempfile.TemporaryFile() as errors:
        # stderr to a file, not a pipe: gen --out names every file it writes there, more than a
        # pipe holds while this process waits.
        started = time.perf_counter()
        code = subprocess.call(["/usr/bin/time", "-q", "-f", "%M", "-o", peak.name, *argv],
                               stdout=stdout, stderr=errors, cwd=ROOT)
        elapsed = time.perf_counter() - started
        errors.seek(0)
        err = errors.read().decode(errors="replace")
        if code != 0:
            sys.exit(f"scale: {' '.join(argv[:4])} ... exited {code}:\n{err[-2000:]}")
        return elapsed, int(open(peak.name).read().split()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="10,100,1000,5000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--target", default=os.path.join(ROOT, "target/release"))
    a = ap.parse_args()
    gen = os.path.join(a.target, "meshscrape-gen")
    verify = os.path.join(a.target, "meshscrape-verify")
    if not os.access("/usr/bin/time", os.X_OK):
        sys.exit("scale: needs GNU time for peak memory: apt-get install -y time")
    for b in (gen, verify):
        if not os.access(b, os.X_OK):
            sys.exit(f"scale: {b} is missing; cargo build --release -p meshscrape-gen -p meshscrape-verify")

    rows = []
    work = tempfile.mkdtemp(prefix="meshscrape-scale-")
    try:
        for n in [int(c) for c in a.counts.split(",")]:
            ns_args = [x for i in range(n) for x in ("--namespace", f"ns-{i}")]
            base = [gen, "--config", "examples/identity-service.yaml", *ns_args]
            stream = os.path.join(work, f"{n}.yaml")
            row = {"namespaces": n}
            for tool in ("gen", "gen --out", "verify"):
                times, peaks = [], []
                for _ in range(a.runs):
                    if tool == "gen":
                        with open(stream, "wb") as out:
                            t, m = run(base, out)
                    elif tool == "gen --out":
                        out_dir = os.path.join(work, f"out-{n}")
                        shutil.rmtree(out_dir, ignore_errors=True)
                        t, m = run([*base, "--out", out_dir], subprocess.DEVNULL)
                    else:
                        t, m = run([verify, "manifests", stream], subprocess.DEVNULL)
                    times.append(t)
                    peaks.append(m)
                row[tool] = {"seconds": statistics.median(times), "peak_kib": max(peaks)}
            row["stream_bytes"] = os.path.getsize(stream)
            rows.append(row)
            print(f"{n} namespaces done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'namespaces':>10} | {'tool':<9} | {'time':>8} | {'peak RSS':>9} | {'per namespace':>20}")
    for r in rows:
        n = r["namespaces"]
        for tool in ("gen", "gen --out", "verify"):
            t, m = r[tool]["seconds"], r[tool]["peak_kib"]
            print(f"{n:>10} | {tool:<9} | {t * 1000:>6.0f} ms | {m / 1024:>6.1f} MB | "
                  f"{t * 1e6 / n:>7.0f} us {m / n:>7.1f} KiB")
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
