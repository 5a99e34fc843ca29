"""Generate the parts of the docs that are read off the code: the room picture and the API.

    python docs/generate.py            # rewrites docs/architecture.md's generated block and docs/api.md
    python docs/generate.py --check    # exits 1 if either file is out of date (nothing written)

The picture is drawn from the package's own imports (``ast``, nothing is imported), one box per
room (a sub-package, or a module of the top level), one arrow per room-to-room import. It is a
Mermaid flowchart, which GitHub and most Markdown viewers render as a picture. The API reference
is generated from the docstrings and signatures of every name in a public module's ``__all__``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "alamp_fast"
ARCH = ROOT / "docs" / "architecture.md"
API = ROOT / "docs" / "api.md"
START, END = "<!-- rooms:start -->", "<!-- rooms:end -->"

# the modules the API reference covers, in reading order; an optional extra that is missing
# gives a line saying so instead of the section
PUBLIC_MODULES = [
    "alamp_fast",
    "alamp_fast.al",
    "alamp_fast.al.strategies",
    "alamp_fast.al.protocol",
    "alamp_fast.al.classifiers",
    "alamp_fast.al.datasets",
    "alamp_fast.al.imbalance",
    "alamp_fast.al.report",
    "alamp_fast.svm",
    "alamp_fast.workflow",
    "alamp_fast.outofcore",
    "alamp_fast.distributed",
    "alamp_fast.integrations",
    "alamp_fast.finetune",
]


# ---------------------------------------------------------------------------------------------
# the import graph


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module a dotted import name lands in (the longest known prefix)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the package modules it imports, at module level or inside functions.

    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``.
    An import of one of the module's own parent packages is left out: Python runs a parent's
    ``__init__`` before any of its submodules, whatever the submodule imports, so such an
    arrow is not a dependency the module can choose.
    """
    modules = module_files(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                dep = _resolve(t, modules)
                if dep is None or dep == mod or mod.startswith(dep + "."):
                    continue
                graph[mod].add(dep)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


# top-level modules drawn as one room: the CPU kernels and the helpers only they use
KERNEL_ROOM = "kernels"
KERNEL_MODULES = {
    "uncertainty", "alamp", "selection", "coreset", "coreset_faiss", "badge", "_simd", "_parallel",
}


def is_shim(path: Path) -> bool:
    """A deprecation alias: a module that replaces itself in ``sys.modules`` by its new home."""
    return "sys.modules[__name__] =" in path.read_text(encoding="utf-8")


def room_of(module: str) -> str:
    """``alamp_fast.svm._cv`` -> ``svm/``; ``alamp_fast.coreset`` -> ``kernels``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    files = module_files()
    if len(parts) >= 2 and files.get(".".join(parts[:2]), Path()).name == "__init__.py":
        return parts[1] + "/"
    if parts[1] in KERNEL_MODULES:
        return KERNEL_ROOM
    return parts[1]


def first_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def rooms_block(root: Path = ROOT) -> str:
    graph = import_graph(root)
    files = module_files(root)
    shims = sorted(m for m, p in files.items() if is_shim(p))
    edges: dict[str, set[str]] = defaultdict(set)
    rooms: dict[str, list[str]] = defaultdict(list)
    for mod, deps in graph.items():
        if mod in shims or mod.endswith("__main__"):
            continue
        a = room_of(mod)
        rooms[a].append(mod)
        for d in deps:
            b = room_of(d)
            if a != b and b != "__init__" and d not in shims:
                edges[a].add(b)

    def node_id(room: str) -> str:
        return "r_" + room.strip("/").replace("_", "") + ("_pkg" if room.endswith("/") else "")

    lines = ["```mermaid", "flowchart TD"]
    for room in sorted(rooms):
        if room == "__init__":
            continue
        lines.append(f'  {node_id(room)}["{room}"]')
    for a in sorted(edges):
        if a == "__init__":
            continue
        for b in sorted(edges[a]):
            lines.append(f"  {node_id(a)} --> {node_id(b)}")
    lines.append("```")
    lines.append("")
    # no line counts: the picture changes when the structure does, not at every edit
    lines.append("| room | modules | what it owns (its docstring's first line) |")
    lines.append("|---|---:|---|")
    for room in sorted(rooms):
        mods = rooms[room]
        if room == KERNEL_ROOM:
            names = ", ".join(f"`{m.rpartition('.')[2]}`" for m in sorted(mods))
            doc = f"the CPU kernels (numba) and their helpers: {names}"
        else:
            head = f"{PACKAGE}.{room.rstrip('/')}" if room != "__init__" else PACKAGE
            doc = first_line(files[head]) if head in files else ""
        lines.append(f"| `{room}` | {len(mods)} | {doc.replace('|', '/')} |")
    cycles = find_cycles(graph)
    lines.append("")
    if cycles:
        lines.append("Import circles today: " + "; ".join(" <-> ".join(c) for c in cycles) + ".")
    else:
        lines.append("The import graph has no circle (checked by `tests/test_architecture.py`).")
    if shims:
        lines.append("")
        lines.append(
            "Deprecated paths (each warns and is the same module as its new home; left out of the"
            " picture): " + ", ".join(f"`{m}`" for m in shims) + "."
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the API reference


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def _constant(obj) -> str:
    if isinstance(obj, dict):  # registries: their keys are the contract, not the functions
        return "Mapping with keys: " + ", ".join(f"`{k}`" for k in obj)
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))
    return f"Constant: `{text[:300]}`"


def api_markdown() -> str:
    out = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/generate.py`; do not edit by hand.",
        "",
    ]
    for name in PUBLIC_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError as exc:  # an optional extra that is not installed
            out += [f"## `{name}`", "", f"Not importable here ({exc}); install its extra.", ""]
            continue
        doc = inspect.getdoc(mod) or ""
        out += [f"## `{name}`", "", doc, ""]
        for attr in getattr(mod, "__all__", []):
            if attr.startswith("__"):
                continue
            try:
                obj = getattr(mod, attr)
            except (AttributeError, ImportError) as exc:
                out += [f"### `{name}.{attr}`", "", f"Not importable here ({exc}).", ""]
                continue
            if inspect.ismodule(obj):
                out += [f"### `{obj.__name__}` (module)", "", inspect.getdoc(obj) or "", ""]
                continue
            kind = "class" if inspect.isclass(obj) else ("function" if callable(obj) else "")
            sig = re.sub(r" at 0x[0-9a-fA-F]+", "", _signature(obj)) if callable(obj) else ""
            odoc = inspect.getdoc(obj) if (callable(obj) or inspect.isclass(obj)) else ""
            if not kind:
                out += [f"### `{name}.{attr}`", "", _constant(obj), ""]
                continue
            out += [f"### `{name}.{attr}{sig}`", "", f"*{kind}*", "", odoc or "", ""]
    return "\n".join(out).rstrip() + "\n"


def architecture_markdown(current: str) -> str:
    block = f"{START}\n{rooms_block()}\n{END}"
    if START in current and END in current:
        head, rest = current.split(START, 1)
        _, tail = rest.split(END, 1)
        return head + block + tail
    return current.rstrip() + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    arch_now = ARCH.read_text(encoding="utf-8") if ARCH.exists() else "# Architecture\n"
    wanted = {ARCH: architecture_markdown(arch_now), API: api_markdown()}
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text("utf-8") != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date: run python docs/generate.py")
        return 1 if stale else 0
    for p in stale:
        p.write_text(wanted[p], encoding="utf-8")
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
