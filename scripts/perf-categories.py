#!/usr/bin/env python3
"""perf-categories.py: where a server's CPU goes per request, by category
(issue 15; docs/performance.md, "Where a connection's time goes").

    perf-categories.py DATA:REQUESTS[:NAME] ...

Each DATA is a `perf record -g` of one server over a storm of REQUESTS
requests (imds-storm's "requests").  Each sample is put in the first
category its stack matches: the TC programs, the TC dispatch around them,
a named syscall, io_uring_enter by operation, other kernel work (BPF map
lookups and the descriptor table by their own symbols), or user space by
object.  A profile without -g is read too, by each sample's own symbol:
the syscall and io_uring rows are then empty (their work is in "kernel:
other"), and a map lookup cannot be told from the program that made it.
Worth it where the call graph costs too much: `perf record -g` halved
imdsd's steady keep-alive rate on this machine (docs/performance.md).  Printed: samples per 1,000 requests, one column per DATA,
so servers and builds profiled at the same frequency compare directly
(at -F 2999 a sample is 333 us of CPU: samples per 1,000 requests / 3 is
microseconds per request)."""
import collections
import re
import subprocess
import sys

# (category, pattern on the whole stack), first match wins.
STACK_CATEGORIES = [
    ("tc: imds_tc_egress program", r"imds_tc_egress"),
    ("tc: imds_tc_ingress program", r"imds_tc_ingress"),
    ("tc: dispatch (tc_run, cls_bpf)", r"\b(tc_run|cls_bpf_classify|tcf_classify)\b"),
]
# Kernel work named by the sample's own symbol, where the stack says no
# more (no syscall, no TC program above it; in a profile without -g, every
# kernel sample).
LEAF_CATEGORIES = [
    ("kernel: BPF map lookups (hash buckets)", r"^(lookup_nulls_elem_raw|htab_\w+|__htab_\w+)$"),
    ("kernel: descriptor table (fget, fput)", r"^(fget|fput|__fput|fput_close\w*|__fget\w*|fdget\w*|alloc_fd|fd_install"
     r"|file_close_fd\w*|put_unused_fd|io_file_get_\w+)$"),
]
# io_uring operations, innermost first.
URING_OPS = ("io_accept", "io_recv", "io_send", "io_close", "io_shutdown", "io_uring_cmd")


def frames(sample):
    """The sample's stack, leaf first, as 'symbol (object)' strings."""
    return [re.sub(r"^[0-9a-f]+\s+", "", line.strip()) for line in sample.strip().split("\n") if line.strip()]


def uring_category(stack):
    for f in stack:
        sym = f.split(" (")[0]
        if sym in URING_OPS:
            return "io_uring_enter: " + sym[3:]
        if sym in ("io_cqring_wait", "schedule", "__schedule"):
            return "io_uring_enter: waiting (task work: deferred fput, wakeups)"
    return "io_uring_enter: submission, other"


def category(stack):
    text = "\n".join(stack)
    for name, pattern in STACK_CATEGORIES:
        if re.search(pattern, text):
            return name
    if "io_uring_enter" in text:
        return uring_category(stack)
    m = re.search(r"(?:__x64_sys_|__do_sys_)(\w+)", text)
    if m:
        return "syscall: " + m.group(1)
    if "do_syscall_64" in text:
        return "syscall: entry and exit"
    if "[kernel" in stack[0]:
        leaf = stack[0].split(" (")[0]
        for name, pattern in LEAF_CATEGORIES:
            if re.match(pattern, leaf):
                return name
        return "kernel: other (io-wq threads, softirq, timers)"
    m = re.search(r"\((.*?)\)\s*$", stack[0])
    return "user: " + (m.group(1).split("/")[-1] if m else "?")


def profile(path):
    out = subprocess.run(["perf", "script", "-i", path, "-F", "ip,sym,dso"], capture_output=True, text=True,
                         check=True).stdout
    counts = collections.Counter()
    # With call graphs a blank line ends each sample's stack; without, a
    # sample is one line.
    for sample in out.split("\n\n") if "\n\n" in out else out.splitlines():
        stack = frames(sample)
        if stack:
            counts[category(stack)] += 1
    return counts


def main(argv):
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    cols = []
    for arg in argv:
        parts = arg.split(":")
        if len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) == 0:
            print(f"perf-categories.py: '{arg}' is not DATA:REQUESTS[:NAME]", file=sys.stderr)
            return 2
        cols.append((parts[2] if len(parts) > 2 else parts[0], profile(parts[0]), int(parts[1])))
    names = sorted({k for _, c, _ in cols for k in c}, key=lambda k: -max(c[k] / n for _, c, n in cols))
    print("%-58s" % "samples per 1,000 requests" + "".join("%14s" % name[:13] for name, _, _ in cols))
    for k in names:
        print("%-58s" % k + "".join("%14.1f" % (c[k] * 1000 / n) for _, c, n in cols))
    print("%-58s" % "total" + "".join("%14.1f" % (sum(c.values()) * 1000 / n) for _, c, n in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
