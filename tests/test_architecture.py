"""The layout's rules, checked on the source: who may import whom, no cycles, small modules.

The layers (ARCHITECTURE.md): ``bot.core`` <- ``bot.engine`` / ``bot.store`` <- ``connectors``
and ``bot.notify`` <- ``bot.telegram`` <- ``bot.runtime`` <- ``bot.cli``. Every import counts,
including the ones inside functions and under ``TYPE_CHECKING``: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "connectors")
MAX_LINES = 600

#: layer -> the layers it may import (besides itself and `bot`, which holds only the version)
ALLOWED: dict[str, frozenset[str]] = {
    "bot": frozenset(),
    "bot.core": frozenset(),
    "bot.engine": frozenset({"bot.core"}),
    "bot.store": frozenset({"bot.core"}),
    "bot.notify": frozenset({"bot.core", "bot.store"}),
    "bot.telegram": frozenset({"bot.core", "bot.engine", "bot.store", "bot.notify"}),
    "connectors": frozenset({"bot.core", "bot.store"}),
    "connectors.feeds": frozenset({"bot.core", "bot.store", "connectors"}),
    "connectors.history": frozenset({"bot.core", "bot.store", "connectors"}),
    "bot.runtime": frozenset(
        {
            "bot.core",
            "bot.engine",
            "bot.store",
            "bot.notify",
            "bot.telegram",
            "connectors",
            "connectors.feeds",
            "connectors.history",
        }
    ),
}
ALLOWED["bot.cli"] = ALLOWED["bot.runtime"] | {"bot.runtime"}


def module_files() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


MODULES = module_files()


def layer_of(module: str) -> str:
    best = ""
    for layer in ALLOWED:
        if (module == layer or module.startswith(layer + ".")) and len(layer) > len(best):
            best = layer
    return best


def imports_of(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported project module, line) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _resolve(alias.name, None, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield from _resolve(base, alias.name, node.lineno)


def _resolve(base: str, name: str | None, line: int) -> Iterator[tuple[str, int]]:
    if base.split(".")[0] not in PACKAGES:
        return
    if name is not None and f"{base}.{name}" in MODULES:
        yield f"{base}.{name}", line
    elif base in MODULES:
        yield base, line
    else:
        raise AssertionError(f"line {line}: import of unknown project module {base}")


GRAPH: dict[str, list[tuple[str, int]]] = {
    m: sorted(set(imports_of(m, p))) for m, p in sorted(MODULES.items())
}


def test_every_module_belongs_to_a_layer() -> None:
    assert [m for m in MODULES if not layer_of(m)] == []


def test_imports_flow_one_way() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        src = layer_of(module)
        for target, line in targets:
            dst = layer_of(target)
            if dst not in (src, "bot") and dst not in ALLOWED[src]:
                wrong.append(f"{MODULES[module].relative_to(ROOT)}:{line}: {src} imports {target}")
    assert wrong == [], "forbidden import direction:\n" + "\n".join(wrong)


def test_no_import_cycle_between_files() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t, _ in GRAPH[m]:
            if t == m:
                continue
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t) :], t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in GRAPH:
        if m not in state:
            visit(m)
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_no_production_module_is_over_600_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in MODULES.values()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize("package", ["bot.core", "bot.engine"])
def test_pure_packages_load_no_network_redis_or_notifier_code(package: str) -> None:
    probe = (
        f"import sys, {package}, pkgutil, importlib\n"
        f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
        "    importlib.import_module(m.name)\n"
        "heavy = ('aiohttp', 'redis', 'telegram', 'websockets', 'ccxt', 'connectors', "
        "'bot.notify', 'bot.store', 'bot.runtime')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or "
        "any(m == h or m.startswith(h + '.') for h in heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
