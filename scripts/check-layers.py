#!/usr/bin/env python3
"""Checks the include graph of user/ and bpf/ against the layers.

Each folder of user/ is one layer; its README.md says which other layers it
may use, on a line `Uses: a, b` (`Uses: nothing` for a leaf).  A quoted
include names a header by its layer (`#include "store/store.h"`); bpf/ and
include/ headers go by their file name.  The check fails when

  - a file includes a header of a layer its folder's README does not allow,
  - a file includes a header that does not exist in the tree (a typo would
    otherwise hide an edge), or
  - the modules (foo.c with foo.h) depend on each other in a cycle, inside
    a layer or across layers.

    check-layers.py [ROOT]     exit 0 clean, 1 with one line per finding
    check-layers.py --self-test  proves each kind of finding is caught
"""
import os
import re
import shutil
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
USES = re.compile(r"^Uses:\s*(.+)$", re.M)
# Headers that come from the build (generated) or from third parties.
EXTERNAL = {"imds.skel.h", "vmlinux.h", "llhttp.h"}


def layer_rules(root):
    """{layer: set of layers it may use} from user/*/README.md."""
    rules, problems = {}, []
    udir = os.path.join(root, "user")
    for name in sorted(os.listdir(udir)):
        path = os.path.join(udir, name)
        if not os.path.isdir(path):
            continue
        readme = os.path.join(path, "README.md")
        try:
            text = open(readme, encoding="utf-8").read()
        except OSError:
            problems.append(f"user/{name}: no README.md saying what the folder may use")
            continue
        m = USES.search(text)
        if not m:
            problems.append(f"user/{name}/README.md: no 'Uses:' line")
            continue
        uses = {u.strip() for u in m.group(1).split(",")} - {"nothing", ""}
        rules[name] = uses
    for layer, uses in rules.items():
        for u in sorted(uses - set(rules)):
            problems.append(f"user/{layer}/README.md: 'Uses:' names {u}, which is not a folder of user/")
    return rules, problems


def source_files(root):
    for top in ("user", "bpf", "include"):
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(d, f), root)


def resolve(root, src, name):
    """The tree path an include names, or None if it is not in the tree."""
    candidates = [os.path.join("user", name), os.path.join("include", name),
                  os.path.join(os.path.dirname(src), name)]
    for c in candidates:
        if os.path.isfile(os.path.join(root, c)):
            return os.path.normpath(c)
    return None


def layer_of(path):
    parts = path.split(os.sep)
    if parts[0] == "user" and len(parts) == 3:
        return parts[1]
    return None  # bpf/ and include/ are outside user's layers


def module_of(path):
    return os.path.splitext(path)[0]


def find_cycle(graph):
    """One cycle of the module graph as a list, or None."""
    white, grey, black = 0, 1, 2
    color = {n: white for n in graph}
    stack = []

    def visit(n):
        color[n] = grey
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if color.get(m, white) == grey:
                return stack[stack.index(m):] + [m]
            if color.get(m, white) == white:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        color[n] = black
        return None

    for n in sorted(graph):
        if color[n] == white:
            found = visit(n)
            if found:
                return found
    return None


def check(root):
    rules, problems = layer_rules(root)
    graph = {}
    for src in source_files(root):
        text = open(os.path.join(root, src), encoding="utf-8").read()
        mod = module_of(src)
        graph.setdefault(mod, set())
        for lineno, name in ((text.count("\n", 0, m.start()) + 1, m.group(1)) for m in INCLUDE.finditer(text)):
            if os.path.basename(name) in EXTERNAL:
                continue
            target = resolve(root, src, name)
            if target is None:
                problems.append(f"{src}:{lineno}: includes \"{name}\", which is not in the tree")
                continue
            tmod = module_of(target)
            if tmod != mod:
                graph[mod].add(tmod)
            sl, tl = layer_of(src), layer_of(target)
            if src.startswith("bpf" + os.sep) and target.startswith("user" + os.sep):
                problems.append(f"{src}:{lineno}: the data plane includes user-space \"{name}\"")
            if sl and tl and sl != tl and sl in rules and tl not in rules[sl]:
                problems.append(f"{src}:{lineno}: layer {sl} includes \"{name}\" of layer {tl}; "
                                f"user/{sl}/README.md allows: {', '.join(sorted(rules[sl])) or 'nothing'}")
    cycle = find_cycle(graph)
    if cycle:
        problems.append("dependency cycle: " + " -> ".join(cycle))
    return problems


def self_test():
    """Builds small trees with one defect each and expects each found."""
    cases = {
        "clean": ({}, None),
        "layer": ({"user/a/x.c": '#include "b/y.h"\n'}, "layer a includes"),
        "cycle": ({"user/a/x.c": '#include "a/y.h"\n', "user/a/y.c": '#include "a/x.h"\n'},
                  "dependency cycle"),
        "missing": ({"user/a/x.c": '#include "a/nope.h"\n'}, "not in the tree"),
        "readme": ({"user/c/z.c": ""}, "no README.md"),
    }
    failures = 0
    for name, (extra, expect) in cases.items():
        root = tempfile.mkdtemp(prefix="check-layers-")
        try:
            files = {"user/a/README.md": "Uses: nothing\n", "user/b/README.md": "Uses: a\n",
                     "user/a/x.h": "", "user/a/y.h": "", "user/b/y.h": '#include "a/x.h"\n'}
            files.update(extra)
            for p, t in files.items():
                os.makedirs(os.path.join(root, os.path.dirname(p)), exist_ok=True)
                open(os.path.join(root, p), "w").write(t)
            found = check(root)
            ok = (not found) if expect is None else any(expect in f for f in found)
            print(f"self-test {name}: {'ok' if ok else 'MISSED'} {found if not ok else ''}")
            failures += not ok
        finally:
            shutil.rmtree(root)
    return failures


def main():
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(1 if self_test() else 0)
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    problems = check(root)
    for p in problems:
        print(p)
    print(f"check-layers: {len(problems)} finding(s)" if problems else "check-layers: clean")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
