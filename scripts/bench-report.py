#!/usr/bin/python3
"""bench-report.py: the table of a `make bench` run (scripts/bench.sh).

Reads OUT/env.txt, OUT/nN/rR-SERVER-WORKLOAD.json (imds-storm --json),
OUT/nN/cR-imdsd-WORKLOAD.json (imdsd's fully checked storms), OUT/nN/perf-*.txt and OUT/flood/result.json, and prints Markdown: a summary
of every ratio over all N (issue 15's table), then per N the median over
the repetitions of each metric for imdsd, nginx and the null responder,
imdsd and nginx as ratios to null, imdsd to nginx, and the targets of
issues 5 and 15: each judged on the ratio of the medians, with how many
repetitions met it on their own (the ratio of that repetition's medians)
and the range of those ratios.  Exit status 1 when any server had any
error, in a timed storm or in a checked one.

usage: bench-report.py OUT
"""

import glob
import json
import os
import re
import statistics
import sys

WORKLOADS = ["conn", "keepalive", "steady"]
SERVERS = ["imdsd", "nginx", "null"]
NAMES = {"conn": "connection per request (storm)", "keepalive": "keep-alive (storm)",
         "steady": "steady keep-alive"}


def load_reports(ndir, pattern, name_re):
    """(match, report) for each file of ndir matching pattern and name_re,
    sorted; report is None when the storm failed to write one (counted
    by the callers)."""
    for path in sorted(glob.glob(os.path.join(ndir, pattern))):
        m = re.match(name_re, os.path.basename(path))
        if not m:
            continue
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = None
        yield m, data


def load_runs(ndir):
    """Every run by (server, workload), and the same by repetition:
    (runs, {(server, workload): {rep: [report, ...]}})."""
    runs, by_rep = {}, {}
    for m, data in load_reports(ndir, "r*-*-*.json", r"r(\d+)-(imdsd|nginx|null)-([a-z]+)(?:-\d+)?\.json$"):
        runs.setdefault((m.group(2), m.group(3)), []).append(data)
        by_rep.setdefault((m.group(2), m.group(3)), {}).setdefault(int(m.group(1)), []).append(data)
    return runs, by_rep


def load_checked(ndir):
    """imdsd's fully checked storms (cR-imdsd-WORKLOAD.json), by workload."""
    checked = {}
    for m, data in load_reports(ndir, "c*-imdsd-*.json", r"c(\d+)-imdsd-([a-z]+)\.json$"):
        checked.setdefault(m.group(2), []).append(data)
    return checked


def checked_lines(checked, out):
    """One line per workload; returns errors plus runs without a report."""
    bad = 0
    for w, rs in sorted(checked.items()):
        ok = [r for r in rs if r]
        errors = sum(r["errors"]["total"] for r in ok)
        bad += errors + len(rs) - len(ok)
        comp = sorted(r["completion_s"] for r in ok)
        med = f", completion median {comp[len(comp) // 2]:.3f} s" if comp else ""
        out.append(f"- imdsd, {NAMES[w]} with every answer checked (not in the ratios): {len(rs)} runs,"
                   f" errors {errors}{med}{f', {len(rs) - len(ok)} runs without a report' if len(ok) < len(rs) else ''}")
    return bad


def metric(run, name):
    if run is None:
        return None
    if name == "completion":
        return run["completion_s"]
    if name == "req/s":
        return run["requests_per_s"]
    if name == "p99":
        return run["latency_us"]["p99"]
    if name == "p50":
        return run["latency_us"]["p50"]
    if name == "cpu":
        return run.get("server", {}).get("cpu_us_per_request")
    if name == "client":
        return run.get("client", {}).get("cpu_us_per_request")
    raise KeyError(name)


def median(runs, name):
    vals = [v for v in (metric(r, name) for r in runs) if v is not None]
    return (statistics.median(vals), min(vals), max(vals)) if vals else None


# How each metric is written: the number's format and its unit.
FORMATS = {"completion": ("{:.3f}", " s"), "req/s": ("{:,.0f}", ""), "p50": ("{:,.0f}", " µs"),
           "p99": ("{:,.0f}", " µs"), "cpu": ("{:.1f}", " µs"), "client": ("{:.1f}", " µs")}


def fmt_value(v, name):
    form, unit = FORMATS[name]
    return form.format(v) + unit


def fmt(v, name):
    """A median with its range (CPU figures: the median alone)."""
    if v is None:
        return "-"
    med, lo, hi = v
    if name in ("cpu", "client"):
        return fmt_value(med, name)
    form, unit = FORMATS[name]
    return f"{form.format(med)}{unit} ({form.format(lo)}–{form.format(hi)})"


# (workload, metric, better, targets): each target is (server, reference,
# ratio, applies to N >= ..., issue); imdsd/null and nginx/null are shown
# for every row, imdsd/nginx too.
ROWS = [
    ("conn", "completion", "lower", [("imdsd", "null", 1.05, 0, 15), ("imdsd", "nginx", 1.10, 0, 5)]),
    ("conn", "req/s", "higher", []),
    ("conn", "p50", "lower", []),
    ("conn", "p99", "lower", [("imdsd", "null", 1.20, 0, 15), ("imdsd", "nginx", 1.00, 0, 5)]),
    ("conn", "cpu", "lower", [("imdsd", "nginx", 1.00, 0, 15)]),
    ("conn", "client", "lower", []),
    ("keepalive", "completion", "lower", [("imdsd", "null", 1.15, 0, 15), ("imdsd", "nginx", 1.10, 1000, 5)]),
    ("keepalive", "req/s", "higher", []),
    ("keepalive", "p50", "lower", []),
    ("keepalive", "p99", "lower", [("imdsd", "null", 1.20, 0, 15), ("imdsd", "nginx", 1.00, 0, 5)]),
    ("keepalive", "cpu", "lower", []),
    ("keepalive", "client", "lower", []),
    ("steady", "req/s", "higher", [("imdsd", "null", 0.95, 0, 15), ("imdsd", "nginx", 2.00, 0, 15),
                                   ("imdsd", "nginx", 1.80, 0, 5)]),
    ("steady", "p50", "lower", []),
    ("steady", "p99", "lower", [("imdsd", "nginx", 1.00, 0, 5)]),
    ("steady", "cpu", "lower", []),
    ("steady", "client", "lower", []),
]

LABEL = {"completion": "completion", "req/s": "requests/s", "p50": "p50", "p99": "p99",
         "cpu": "server CPU per request", "client": "load generator CPU per request"}


def medians(runs, w, name):
    return {srv: median(runs.get((srv, w), []), name) for srv in SERVERS}


def ratio(meds, a, b):
    x, y = meds.get(a), meds.get(b)
    return x[0] / y[0] if x and y and y[0] else None


def rep_ratios(by_rep, w, name, a, b):
    """The ratio a/b of each repetition's medians: a repetition's servers
    run within a minute or so of each other, repetitions further apart."""
    ra, rb = by_rep.get((a, w), {}), by_rep.get((b, w), {})
    out = []
    for rep in sorted(set(ra) & set(rb)):
        x, y = median(ra[rep], name), median(rb[rep], name)
        if x and y and y[0]:
            out.append(x[0] / y[0])
    return out


def fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def verdicts(n, w, name, better, targets, meds, by_rep, misses):
    """The targets of a row as text, each with its verdict on the ratio of
    the medians and how many repetitions met it on their own; misses
    noted."""
    out = []
    for srv, ref, target, from_n, issue in targets:
        r = ratio(meds, srv, ref)
        if n < from_n or r is None:
            continue
        met = (lambda x: x >= target) if better == "higher" else (lambda x: x <= target)
        ok = met(r)
        tgt = f"{srv}/{ref} {'≥' if better == 'higher' else '≤'} {target:.2f} (#{issue})"
        reps = rep_ratios(by_rep, w, name, srv, ref)
        each = (f" (repetitions {sum(map(met, reps))} of {len(reps)}: {min(reps):.2f} to {max(reps):.2f})"
                if reps else "")
        out.append(f"{tgt}: {'yes' if ok else '**no**'}{each}")
        if not ok:
            misses.append(f"N={n} {w} {LABEL[name]}: {srv}/{ref} {r:.2f}, target {tgt}{each}")
    return "; ".join(out)


def table(n, runs, by_rep, out, misses):
    out.append(f"### N = {n} VMs\n")
    out.append("| workload | metric | imdsd median (min–max) | nginx median (min–max) | null median (min–max) "
               "| imdsd/null | nginx/null | imdsd/nginx | targets |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for w, name, better, targets in ROWS:
        meds = medians(runs, w, name)
        out.append(f"| {NAMES[w]} | {LABEL[name]} | {fmt(meds['imdsd'], name)} | {fmt(meds['nginx'], name)} | "
                   f"{fmt(meds['null'], name)} | {fmt_ratio(ratio(meds, 'imdsd', 'null'))} | "
                   f"{fmt_ratio(ratio(meds, 'nginx', 'null'))} | {fmt_ratio(ratio(meds, 'imdsd', 'nginx'))} | "
                   f"{verdicts(n, w, name, better, targets, meds, by_rep, misses)} |")
    out.append("")


def summary(all_runs, out):
    """Issue 15's table: every ratio, one column per N."""
    ns = sorted(all_runs)
    out.append("### Summary: ratios to the null responder (and imdsd to nginx), medians\n")
    out.append("| workload | metric | " + " | ".join(f"N = {n:,}: imdsd/null, nginx/null, imdsd/nginx" for n in ns)
               + " | null itself |")
    out.append("|---|---|" + "---|" * len(ns) + "---|")
    for w, name, _, _ in ROWS:
        if name == "client":
            continue
        cells, null_vals = [], []
        for n in ns:
            meds = medians(all_runs[n], w, name)
            cells.append(", ".join(fmt_ratio(ratio(meds, a, b))
                                   for a, b in (("imdsd", "null"), ("nginx", "null"), ("imdsd", "nginx"))))
            if meds["null"]:
                null_vals.append(fmt_value(meds["null"][0], name))
        out.append(f"| {NAMES[w]} | {LABEL[name]} | " + " | ".join(cells) + f" | {' / '.join(null_vals)} |")
    out.append("")


def errors_line(runs, server):
    total, missing, kinds = 0, 0, {}
    for (srv, _), rs in runs.items():
        if srv != server:
            continue
        for r in rs:
            if r is None:
                missing += 1
                continue
            total += r["errors"]["total"]
            for k, v in r["errors"].items():
                if k != "total" and v:
                    kinds[k] = kinds.get(k, 0) + v
    detail = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    return total, missing, detail


def memory_lines(runs, out):
    imdsd = [r for rs in (runs.get(("imdsd", w), []) for w in WORKLOADS) for r in rs if r and "memory" in r]
    nginx = [r for rs in (runs.get(("nginx", w), []) for w in WORKLOADS) for r in rs if r and "memory" in r]
    if imdsd:
        m = max(imdsd, key=lambda r: r["memory"]["rss_kb"])["memory"]
        per_vm = m.get("arena_bytes_per_vm", -1)
        out.append(f"- imdsd memory (largest of the runs): RSS {m['rss_kb']:,} KiB (anonymous {m['rss_anon_kb']:,} KiB,"
                   f" files and BPF map mappings {m.get('rss_file_kb', -1):,} KiB: the 64 MiB arena is resident"
                   f" whole); arena in use {m.get('arena_bytes', -1):,.0f} bytes for"
                   f" {m.get('loaded_vms', -1)} VMs = {per_vm:,.0f} bytes per VM")
    if nginx:
        m = max(nginx, key=lambda r: r["memory"]["rss_kb"])["memory"]
        out.append(f"- nginx memory (master + workers, largest of the runs): RSS {m['rss_kb']:,} KiB"
                   f" (anonymous {m['rss_anon_kb']:,} KiB); its tree on disk holds the same answers as files")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    base = sys.argv[1]
    out, misses = [], []
    any_errors = 0
    out.append("## make bench results\n")
    try:
        with open(os.path.join(base, "env.txt")) as f:
            out.append("```\n" + f.read().rstrip() + "\n```\n")
    except OSError:
        pass
    ndirs = sorted(glob.glob(os.path.join(base, "n*[0-9]")), key=lambda p: int(p.rsplit("n", 1)[1]))
    per_n = {int(d.rsplit("n", 1)[1]): load_runs(d) for d in ndirs}
    all_runs = {n: r for n, (r, _) in per_n.items() if r}
    if all_runs:
        summary(all_runs, out)
    for n, runs in sorted(all_runs.items()):
        ndir = os.path.join(base, f"n{n}")
        table(n, runs, per_n[n][1], out, misses)
        for server in SERVERS:
            total, missing, detail = errors_line(runs, server)
            any_errors += total + missing
            if total + missing:
                misses.append(f"N={n} {server}: {total} errors, {missing} runs without a report")
            out.append(f"- {server}: errors {total}{f' ({detail})' if detail else ''}"
                       f"{f', {missing} runs without a report' if missing else ''}")
        checked_bad = checked_lines(load_checked(ndir), out)
        any_errors += checked_bad
        if checked_bad:
            misses.append(f"N={n} imdsd checked storms: {checked_bad} errors or runs without a report")
        memory_lines(runs, out)
        plots = sorted(glob.glob(os.path.join(ndir, "latency-*.svg")))
        plots = [p for p in plots if re.search(r"latency-[a-z]+\.svg$", p)]
        if plots:
            out.append("- latency plots: " + ", ".join(plots))
        for srv, w, name in (("imdsd", "conn", "perf-conn"), ("imdsd", "steady", "perf-steady"),
                             ("null", "conn", "perf-null-conn")):
            p = os.path.join(ndir, f"{name}.txt")
            if os.path.exists(p) and os.path.getsize(p):
                with open(p) as f:
                    lines = [ln.rstrip() for ln in f.read().rstrip().splitlines()[:28]]
                out.append(f"\nperf profile of {srv}, {w} workload (top symbols, % of {srv}'s samples):\n")
                out.append("```\n" + "\n".join(lines) + "\n```")
        out.append("")
    flood = os.path.join(base, "flood", "result.json")
    if os.path.exists(flood):
        with open(flood) as f:
            fl = json.load(f)
        out.append("### Flood (issue 4, acceptance 2)\n")
        out.append(f"VM {fl['flood_vm']} sends SYNs at {fl['flood_pps']} packets/s (10x its budget of"
                   f" {fl['budget_pps']}/s) while VM {fl['crawl_vm']} crawls ({fl['mode']}, {fl['duration']} s"
                   f" per run, {fl['reps']} runs each).\n")
        out.append("| | crawl p99 (median) | crawl p50 | requests/s | crawl errors |")
        out.append("|---|---|---|---|---|")
        for k in ("unloaded", "loaded"):
            r = fl[k]
            out.append(f"| {k} | {r['p99']:,.0f} µs | {r['p50']:,.0f} µs | {r['rps']:,.0f} | {r['errors']} |")
        out.append("")
        out.append(f"- crawl p99 loaded/unloaded: {fl['p99_ratio']:.2f} (target ≤ 1.20:"
                   f" {'met' if fl['p99_ratio'] <= 1.2 else 'NOT met'})")
        out.append(f"- the flooding VM sent {fl['sent']:,} SYNs in {fl['seconds']:.1f} s; its drop_budget grew by"
                   f" {fl['drop_budget']:,} and its pass_verified by {fl['passed']:,} ({fl['passed_pps']:,.0f}/s"
                   f" against a budget of {fl['budget_pps']}/s: the packets it sends also include the RSTs its"
                   f" kernel answers SYN-ACKs with); the crawling VM's drop_budget grew by {fl['crawler_drop_budget']}")
        if "budget_held" in fl:
            out.append(f"- budget held (passed ≤ budget × seconds + one burst per run, within 5 %, and the rest"
                       f" counted as drop_budget): {'yes' if fl['budget_held'] else '**no**'}")
            if not fl["budget_held"]:
                misses.append("flood: the flooding VM's packets were not held to its budget")
        if fl['p99_ratio'] > 1.2:
            misses.append(f"flood: crawl p99 loaded/unloaded {fl['p99_ratio']:.2f} > 1.20")
        out.append("")
    out.append("### Targets missed\n")
    if misses:
        out.extend(f"- {m}" for m in misses)
    else:
        out.append("- none")
    print("\n".join(out))
    sys.exit(1 if any_errors else 0)


if __name__ == "__main__":
    main()
