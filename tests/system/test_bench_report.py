"""scripts/bench-report.py: the verdicts of `make bench`, on runs written
here in imds-storm's --json shape (no lab: the report only reads files)."""

import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPORT = os.path.join(ROOT, "scripts", "bench-report.py")


def storm_json(rps, completion=1.0, p99=1000, errors=0):
    return {"requests_per_s": rps, "completion_s": completion,
            "latency_us": {"p50": p99 / 2, "p99": p99},
            "errors": {"total": errors, "timeout": errors},
            "server": {"cpu_us_per_request": 1e6 / rps}, "client": {"cpu_us_per_request": 1e6 / rps}}


def write_runs(out, steady, errors=0):
    """steady: {(rep, server): requests/s}; conn and keep-alive storms
    alike for every server, so only the steady rows differ."""
    ndir = out / "n50"
    ndir.mkdir(parents=True)
    for (rep, srv), rps in steady.items():
        (ndir / f"r{rep}-{srv}-steady-1.json").write_text(json.dumps(storm_json(rps, errors=errors)))
        for w in ("conn", "keepalive"):
            (ndir / f"r{rep}-{srv}-{w}-1.json").write_text(json.dumps(storm_json(1000)))
    return ndir


def run_report(out):
    return subprocess.run(["/usr/bin/python3", REPORT, str(out)], capture_output=True, text=True)


def steady_row(text):
    """The per-N table's row (the summary's comes first and has no targets)."""
    return [ln for ln in text.splitlines() if ln.startswith("| steady keep-alive | requests/s |")][-1]


def test_a_verdict_says_how_many_repetitions_met_it(tmp_path):
    # imdsd/null per repetition: 1.00, 0.80, 0.90; medians 100 over 110.
    write_runs(tmp_path, {(1, "imdsd"): 100, (1, "null"): 100, (1, "nginx"): 40,
                          (2, "imdsd"): 88, (2, "null"): 110, (2, "nginx"): 40,
                          (3, "imdsd"): 108, (3, "null"): 120, (3, "nginx"): 40})
    r = run_report(tmp_path)
    assert r.returncode == 0, r.stderr
    row = steady_row(r.stdout)
    assert "imdsd/null ≥ 0.95 (#15): **no** (repetitions 1 of 3: 0.80 to 1.00)" in row
    assert "imdsd/nginx ≥ 2.00 (#15): yes (repetitions 3 of 3: 2.20 to 2.70)" in row
    missed = r.stdout.split("### Targets missed", 1)[1]
    assert "N=50 steady requests/s: imdsd/null 0.91, target imdsd/null ≥ 0.95 (#15) (repetitions 1 of 3" in missed


def test_a_repetition_without_its_pair_is_left_out(tmp_path):
    # Repetition 2 has no null run: two ratios, not three.
    write_runs(tmp_path, {(1, "imdsd"): 100, (1, "null"): 100, (1, "nginx"): 40,
                          (2, "imdsd"): 50, (2, "nginx"): 40,
                          (3, "imdsd"): 96, (3, "null"): 100, (3, "nginx"): 40})
    r = run_report(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "(repetitions 2 of 2: 0.96 to 1.00)" in steady_row(r.stdout)


def test_errors_fail_the_report(tmp_path):
    write_runs(tmp_path, {(1, "imdsd"): 100, (1, "null"): 100, (1, "nginx"): 40}, errors=1)
    r = run_report(tmp_path)
    assert r.returncode == 1
    assert "- imdsd: errors 1 (timeout 1)" in r.stdout
