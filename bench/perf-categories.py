#!/usr/bin/env python3
"""Where a server's CPU time goes, from `perf script` output with call graphs (stdlib only).

usage: perf script -i perf.data | perf-categories.py
Each sample is charged to one category: kernel when it was sampled in the kernel, otherwise
the innermost frame (leaf first) that matches a category below, so malloc, memcpy and serde
internals are charged to the code that called them.
"""
import re
import sys
from collections import Counter

CATEGORIES = [  # (name, pattern) — checked in this order on each frame, leaf first
    ("JSON encode (response)", r"hostgate::admission::response_json|Outcome::to_json|hostgate::admission::.*(WireReview|WireResponse)"),
    ("JSON decode: envelope (AdmissionReview, request)", r"hostgate::admission::decode|hostgate::admission::.*(RawReview|RawRequest)"),
    ("JSON decode: object (k8s-openapi Pod)", r"hostgate::object::Workload::from_json|k8s_openapi::.*Deserialize"),
    ("approval (sign/verify)", r"hostgate::approval"),
    ("engine (evaluate, rules, pod view)", r"hostgate::(engine|rules|decision|pod|policy|defaults)::"),
    ("review glue (AdmissionResponse, Outcome)", r"hostgate::admission::"),
    ("metrics", r"hostgate::server::metrics|prometheus_client"),
    ("tracing", r"^tracing|tracing_core|tracing_subscriber|<tracing::"),
    ("TLS (rustls, ring)", r"rustls|ring_core|\bring::"),
    ("HTTP (hyper, axum, tower)", r"hyper::|hyper_util::|axum::|tower::|tower_http::|\bhttp::"),
    ("async runtime (tokio)", r"tokio::|mio::"),
]
COMPILED = [(n, re.compile(p)) for n, p in CATEGORIES]


def classify(frames):
    if frames and frames[0][1]:
        return "kernel (TCP/loopback, syscalls, scheduler)"
    for sym, _ in frames:
        for name, rx in COMPILED:
            if rx.search(sym):
                return name
    if frames and re.search(r"malloc|free|memmove|memcpy|memset", frames[0][0]):
        return "libc (malloc/memcpy), caller unknown"
    return "other / unresolved"


def samples(lines):
    frames, in_sample = [], False
    for line in lines:
        if not line.strip():
            if in_sample:
                yield frames
            frames, in_sample = [], False
            continue
        if not line.startswith((" ", "\t")):
            in_sample = True
            continue
        # "\t    7f12 symbol+0x12 (/path/to/dso)"
        m = re.match(r"\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if m:
            sym, dso = m.group(1), m.group(2)
            kernel = dso.startswith("[kernel") or "vmlinux" in dso
            frames.append((re.sub(r"\+0x[0-9a-f]+$", "", sym), kernel))
    if in_sample:
        yield frames


def main():
    counts = Counter()
    total = 0
    for frames in samples(sys.stdin):
        counts[classify(frames)] += 1
        total += 1
    if not total:
        sys.exit("no samples")
    print(f"{total} samples")
    print("| where | share of server CPU |")
    print("|---|---|")
    for name, n in counts.most_common():
        print(f"| {name} | {100 * n / total:.1f}% |")


if __name__ == "__main__":
    main()
