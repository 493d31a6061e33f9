#!/usr/bin/env python3
"""Summarise a bench/webhook-load.sh results directory (stdlib only).

usage: summarize.py RESULTS_DIR
Reads RESULTS_DIR/machine.json and RESULTS_DIR/<layout>/run<N>/*, writes RESULTS_DIR/results.json
(every run's figures plus median/min/max per layout) and prints a Markdown summary table.
"""
import json
import os
import re
import statistics
import sys

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse_wrk(path):
    """Requests/s, latency percentiles (ms), non-2xx, socket errors and status counts."""
    out = {"rps": None, "p50_ms": None, "p90_ms": None, "p99_ms": None,
           "requests": None, "non_2xx": 0, "socket_errors": 0, "status_counts": {}}
    with open(path) as f:
        text = f.read()
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct in ("50", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        if m:
            out["p%s_ms" % pct] = ms(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non_2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = sum(int(g) for g in m.groups())
    m = re.search(r"^wrk-status-counts (\{.*\})$", text, re.M)
    if m:
        out["status_counts"] = json.loads(m.group(1))
    return out


def load_run(d):
    run = {}
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        key = name.rsplit(".", 1)[0].replace("-", "_")
        if name.startswith("wrk-") and name.endswith(".txt"):
            run[key] = parse_wrk(p)
        elif name.endswith(".json"):
            with open(p) as f:
                try:
                    run[key] = json.load(f)
                except json.JSONDecodeError:
                    run[key] = None
    return run


def get(run, *path):
    v = run
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


# (label, path into a run, unit, target description, target check)
def measures():
    mib = 1 / 1024
    return [
        ("hostgate saturation: wrk, captured review", ("wrk_hostgate_review", "rps"), 1, "reviews/s", "≥ 25,000", lambda v: v >= 25000),
        ("hostgate saturation: wrk, 2,000-review workload", ("wrk_hostgate_workload", "rps"), 1, "reviews/s", "", None),
        ("hostgate saturation: loadgen --rate max, captured review", ("loadgen_hostgate_max", "rate"), 1, "reviews/s", "", None),
        ("nginx static 200 over TLS 1.3: wrk (ceiling)", ("wrk_nginx", "rps"), 1, "requests/s", "", None),
        ("nginx static 200 over TLS 1.3: loadgen --rate max", ("loadgen_nginx_max", "rate"), 1, "requests/s", "", None),
        ("hostgate / nginx (wrk)", ("ratio_wrk",), 100, "%", "≥ 40%", lambda v: v >= 40),
        ("hostgate / nginx (loadgen)", ("ratio_loadgen",), 100, "%", "", None),
        ("wrk p50 / p99 at saturation, hostgate", ("wrk_hostgate_review", "p50_ms"), 1, "ms", "", None),
        ("", ("wrk_hostgate_review", "p99_ms"), 1, "ms", "", None),
        ("1,000/s open loop: p50", ("loadgen_hostgate_1000", "latency_ms", "p50"), 1, "ms", "", None),
        ("1,000/s open loop: p99", ("loadgen_hostgate_1000", "latency_ms", "p99"), 1, "ms", "", None),
        ("1,000/s open loop: p99.9", ("loadgen_hostgate_1000", "latency_ms", "p999"), 1, "ms", "", None),
        ("5,000/s open loop: p50", ("loadgen_hostgate_5000", "latency_ms", "p50"), 1, "ms", "", None),
        ("5,000/s open loop: p99", ("loadgen_hostgate_5000", "latency_ms", "p99"), 1, "ms", "≤ 2 ms", lambda v: v <= 2.0),
        ("5,000/s open loop: p99.9", ("loadgen_hostgate_5000", "latency_ms", "p999"), 1, "ms", "", None),
        ("5,000/s open loop: max", ("loadgen_hostgate_5000", "latency_ms", "max"), 1, "ms", "", None),
        ("5,000/s open loop: generator send lag p99", ("loadgen_hostgate_5000", "send_lag_ms", "p99"), 1, "ms", "", None),
        ("RSS idle after start", ("rss", "idle_kib"), mib, "MiB", "≤ 20 MiB", lambda v: v <= 20),
        ("RSS peak under load (VmHWM)", ("rss", "peak_kib"), mib, "MiB", "≤ 50 MiB", lambda v: v <= 50),
        ("RSS after load", ("rss", "after_kib"), mib, "MiB", "", None),
        ("other work on the machine during the run", ("rss", "other_cpu_pct"), 1, "% of machine", "", None),
    ]


def derive(run):
    hg, ng = get(run, "wrk_hostgate_review", "rps"), get(run, "wrk_nginx", "rps")
    run["ratio_wrk"] = hg / ng if hg and ng else None
    hg, ng = get(run, "loadgen_hostgate_max", "rate"), get(run, "loadgen_nginx_max", "rate")
    run["ratio_loadgen"] = hg / ng if hg and ng else None


def problems(run):
    """Anything that makes a run's figures suspect: errors, non-200s, bad reviews, unsent."""
    out = []
    for k, v in run.items():
        if k.startswith("wrk_") and isinstance(v, dict):
            if v.get("non_2xx") or v.get("socket_errors"):
                out.append(f"{k}: {v.get('non_2xx')} non-2xx, {v.get('socket_errors')} socket errors")
        if k.startswith("loadgen_") and isinstance(v, dict):
            for f in ("errors", "non_2xx", "bad_reviews", "unsent"):
                if v.get(f):
                    out.append(f"{k}: {f}={v[f]}")
    other = get(run, "rss", "other_cpu_pct")
    if isinstance(other, (int, float)) and other > 10:
        by = get(run, "rss", "other_cpu_pct_by_phase") or {}
        detail = ", ".join(f"{k} {v}%" for k, v in by.items() if v > 10)
        out.append(f"other work used up to {other}% of the machine during this run ({detail})")
    return out


def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit in ("reviews/s", "requests/s"):
        return f"{v:,.0f}"
    if unit == "%":
        return f"{v:.0f}%"
    if unit.startswith("%"):
        return f"{v:.0f}"
    if unit == "MiB":
        return f"{v:.1f}"
    return f"{v:.3f}"


def main():
    root = sys.argv[1]
    with open(os.path.join(root, "machine.json")) as f:
        machine = json.load(f)
    result = {"machine": machine, "layouts": {}}
    lines = []
    for layout in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))):
        ldir = os.path.join(root, layout)
        runs = []
        for rd in sorted(os.listdir(ldir)):
            if re.fullmatch(r"run\d+", rd):
                r = load_run(os.path.join(ldir, rd))
                derive(r)
                runs.append(r)
        if not runs:
            continue
        summary = {}
        desc = machine.get("layouts", {}).get(layout, "")
        lines.append(f"\n### layout `{layout}`: {desc}\n")
        lines.append(f"{len(runs)} run(s); median [min – max]\n")
        lines.append("| measure | median [min – max] | unit | target | met |")
        lines.append("|---|---|---|---|---|")
        for label, path, scale, unit, target, check in measures():
            vals = [get(r, *path) for r in runs]
            vals = [v * scale for v in vals if isinstance(v, (int, float))]
            if not vals:
                continue
            med = statistics.median(vals)
            summary[".".join(path)] = {"median": med, "min": min(vals), "max": max(vals), "unit": unit, "values": vals}
            spread = f"{fmt(med, unit)} [{fmt(min(vals), unit)} – {fmt(max(vals), unit)}]" if len(vals) > 1 else fmt(med, unit)
            met = "" if check is None else ("yes" if check(med) else "**no**")
            lines.append(f"| {label or '  (p99)'} | {spread} | {unit} | {target} | {met} |")
        issues = [f"run {i + 1}: {p}" for i, r in enumerate(runs) for p in problems(r)]
        if issues:
            lines.append("\nProblems (figures of these runs are suspect):")
            lines.extend(f"- {p}" for p in issues)
        result["layouts"][layout] = {"description": desc, "runs": runs, "summary": summary, "problems": issues}
    with open(os.path.join(root, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    m = machine
    print(f"## hostgate webhook benchmark — {m.get('date', '')}")
    print(f"\ncommit {m.get('commit', '?')}; {m.get('cpu', '?')}, {m.get('cores', '?')} cores; "
          f"kernel {m.get('kernel', '?')}; {m.get('rustc', '?')}; {m.get('nginx', '?')}; {m.get('wrk', '?')}")
    print("\n".join(lines))
    print(f"\nresults: {os.path.join(root, 'results.json')}")


if __name__ == "__main__":
    main()
