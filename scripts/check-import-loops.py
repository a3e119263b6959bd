#!/usr/bin/env python3
"""Finds import loops between the modules of each crate: an edge per `use crate::…` / `use super::…` to the file
that defines the name (following a parent's `pub use child::X` to the child), and every strongly connected group
of more than one module is a loop. Prints one line per crate; exits 1 when any crate has a loop."""
import os, re, sys, glob
def modpath(root, f):
    rel = os.path.relpath(f, root)[:-3]
    parts = rel.split('/')
    if parts[-1] in ('mod', 'lib', 'main'): parts = parts[:-1]
    return tuple(parts)
def resolve(mods, path):
    # longest prefix that is a module
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in mods: return tuple(path[:n])
    return ()
found = False
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
for crate in sorted(glob.glob('crates/*/src')):
    files = glob.glob(crate + '/**/*.rs', recursive=True)
    mods = {modpath(crate, f): f for f in files}
    text = {m: open(f).read() for m, f in mods.items()}
    # re-exports: parent module `pub use child::{A,B}` -> name -> child
    reexp = {}
    for m, t in text.items():
        for mm in re.finditer(r'pub use (?:self::)?(\w+)::\{?([\w, \n]+)\}?;', t):
            child = m + (mm.group(1),)
            if child in mods:
                for name in re.split(r'[,\s]+', mm.group(2)):
                    if name: reexp[(m, name)] = child
    edges = {m: set() for m in mods}
    for m, t in text.items():
        for mm in re.finditer(r'use (crate|super)((?:::\w+)*)::(\{[^;]*\}|\w+)', t, re.S):
            base = () if mm.group(1) == 'crate' else m[:-1]
            segs = [s for s in mm.group(2).split('::') if s]
            names = re.findall(r'\w+', mm.group(3))
            for name in names or ['']:
                target = resolve(mods, list(base) + segs + [name])
                if target == tuple(list(base) + segs) and (target, name) in reexp:
                    target = reexp[(target, name)]
                if target != m:
                    edges[m].add(target)
    # Tarjan
    index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
    def strong(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index: strong(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: sccs.append(comp)
    sys.setrecursionlimit(10000)
    for v in mods:
        if v not in index: strong(v)
    name = crate.split('/')[1]
    found = found or bool(sccs)
    print(f"{name}: {len(mods)} modules, {sum(map(len, edges.values()))} import edges, loops: {['  <->  '.join('::'.join(x) or 'root' for x in c) for c in sccs] or 'none'}")
sys.exit(1 if found else 0)
