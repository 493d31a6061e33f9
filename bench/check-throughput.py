#!/usr/bin/env python3
"""Manifests per second of `hostgate check` on one core.

Usage: bench/check-throughput.py BINARY WORKLOAD_DIR [RUNS] [-- extra check arguments]

Runs `taskset -c 0 BINARY check -q [extra] WORKLOAD_DIR/pods` RUNS times (default 7) and prints,
for the wall clock and for the CPU time the run used (user + system, from the kernel's rusage,
which other work on a shared machine does not inflate), the best and the median rate. The
workload comes from `bench/gen-workload.py N WORKLOAD_DIR`.
"""
import os, resource, statistics, subprocess, sys, time

args = sys.argv[1:]
extra = []
if "--" in args:
    i = args.index("--")
    args, extra = args[:i], args[i + 1:]
binary, workload = args[0], args[1]
runs = int(args[2]) if len(args) > 2 else 7
pods = os.path.join(workload, "pods")
count = len([f for f in os.listdir(pods) if f.endswith((".yaml", ".yml", ".json"))])
walls, cpus = [], []
for _ in range(runs):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(["taskset", "-c", "0", binary, "check", "-q", *extra, pods],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        sys.exit(f"hostgate check failed ({done.returncode}): {done.stderr.decode()}")
    walls.append(wall)
    cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
for name, xs in (("wall", walls), ("cpu", cpus)):
    print(f"{name}: best {count / min(xs):,.0f} manifests/s, median {count / statistics.median(xs):,.0f} "
          f"manifests/s ({count} manifests, {runs} runs)")
