#!/usr/bin/env python3
"""Import graph of crates/xindao/src (usage: scripts/import_graph.py crates/xindao/src): which modules name which (crate:: paths and super::), and its cycles; exits 1 when there is a cycle.
Levels: 'top' = first component (a directory is one unit); 'module' = the file's own module."""
import os, re, sys, itertools
root = sys.argv[1]
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs') and f not in ('main.rs',):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3].split(os.sep)
            if rel[-1] == 'mod': rel = rel[:-1]
            if rel == ['lib']: continue
            files[tuple(rel)] = open(p).read()
def strip_tests(src):
    # drop #[cfg(test)] mod tests { ... } blocks (test code is not part of the module graph)
    i = src.find('#[cfg(test)]\nmod tests {')
    return src if i < 0 else src[:i]
mods = set(files)
def resolve(path):
    # longest known module prefix of path
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in mods: return tuple(path[:n])
    return None
edges = set()
for mod, src in files.items():
    if mod[-1] == 'tests': continue
    src = strip_tests(src)
    src = re.sub(r'//[^\n]*', '', src)
    # expand `use crate::{a, b::{c}}` roughly: take every crate::x::y path and every x inside crate::{...}
    for m in re.finditer(r'crate::\{([^;]*)\}', src):
        for part in re.findall(r'(?:^|[,{]\s*)([a-z_]+)', m.group(1)):
            t = resolve([part])
            if t and t != mod: edges.add((mod, t))
    for m in re.finditer(r'crate::((?:[a-z_]+::)*[a-z_]+)', src):
        t = resolve(m.group(1).split('::'))
        if t and t != mod: edges.add((mod, t))
    for m in re.finditer(r'\bsuper::((?:[a-z_]+::)*[A-Za-z_]+)', src):
        base = list(mod[:-1])
        t = resolve(base + m.group(1).split('::')) or (tuple(base) if base else None)
        if t and t != mod: edges.add((mod, t))
def sccs(nodes, es):
    adj = {n: [] for n in nodes}
    for a, b in es: adj.setdefault(a, []).append(b); adj.setdefault(b, [])
    index, low, stack, on, out, c = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = c[0]; c[0] += 1; stack.append(v); on.add(v)
        for w in adj[v]:
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(comp)
    for v in list(adj):
        if v not in index: visit(v)
    return out
top = {(a[0], b[0]) for a, b in edges if a[0] != b[0]}
print("top-level edges:")
for a in sorted({a for a, _ in top}):
    print(f"  {a:9} -> {', '.join(sorted(b for x, b in top if x == a))}")
top_cycles = sccs({m[0] for m in mods}, top)
module_cycles = [sorted('::'.join(x) for x in c) for c in sccs(mods, edges)]
print("top-level cycles:", top_cycles or "none")
print("module-level cycles:", module_cycles or "none")
# scripts/test.sh runs this: a new import circle fails the suite.
sys.exit(1 if top_cycles or module_cycles else 0)
