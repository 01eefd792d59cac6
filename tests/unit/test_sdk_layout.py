"""The SDK's module layout, read from its source with `ast`: no import cycle between its modules,
nothing server-side imported, and only the config module reads the worker's environment.

Every import counts, including those inside functions and under TYPE_CHECKING: a lazy import
hides a cycle from the interpreter, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SDK_SRC = REPO / "sdk" / "src"

# Packages of the server side (and the frameworks it uses) that a worker image must not need.
SERVER_SIDE = frozenset(
    {
        "skiff_core",
        "skiff_gateway",
        "skiff_controller",
        "skiff_cli",
        "fastapi",
        "starlette",
        "uvicorn",
        "boto3",
        "botocore",
        "redis",
        "nomad",
        "consul",
        "typer",
        "rich",
        "pydantic",
        "runpod",
    }
)
# The one module of the worker runtime that reads the environment (the client reads its own
# SKIFF_BASE_URL / SKIFF_API_KEY defaults).
ENV_READERS = frozenset({"skiff.worker.config", "skiff.client"})


def _modules(src: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(SDK modules that `name` imports, top-level names of the other packages it imports)."""
    is_package = path.name == "__init__.py"
    internal: set[str] = set()
    external: set[str] = set()

    def add(target: str) -> None:
        if target in modules:
            internal.add(target)
        elif target.split(".")[0] in {m.split(".")[0] for m in modules}:
            # `import skiff.x.y` where y is not a module: the nearest module above it.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target:
                internal.add(target)
        else:
            external.add(target.split(".")[0])

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                # `from pkg import sub` imports the submodule; `from mod import name` the module.
                add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source)
    internal.discard(name)
    return internal, external


def _graph(src: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules(src)
    internal, external = {}, {}
    for name, path in modules.items():
        internal[name], external[name] = _imports(name, path, modules)
    return internal, external


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


_ENV_NAMES = ("environ", "environb", "getenv", "getenvb")


def _reads_environment(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in _ENV_NAMES and ast.unparse(node.value) == "os":
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name in _ENV_NAMES for a in node.names):
            return True
    return False


def test_sdk_modules_import_each_other_without_a_cycle() -> None:
    internal, _ = _graph(SDK_SRC)
    assert "skiff.worker.loop" in internal and "skiff.client" in internal  # the walk found the SDK
    assert _cycle(internal) is None, " -> ".join(_cycle(internal) or [])


def test_sdk_imports_nothing_server_side() -> None:
    _, external = _graph(SDK_SRC)
    offending = {name: sorted(found & SERVER_SIDE) for name, found in external.items() if found & SERVER_SIDE}
    assert offending == {}


def test_progress_depends_on_the_transport_not_on_the_loop() -> None:
    internal, _ = _graph(SDK_SRC)
    assert "skiff.worker.transport" in internal["skiff.worker.progress"]
    below_progress = _reachable(internal, "skiff.worker.progress")
    assert not below_progress & {"skiff.worker.loop", "skiff.worker.serve", "skiff.worker.heartbeat"}


def test_only_the_config_reads_the_environment() -> None:
    readers = {name for name, path in _modules(SDK_SRC).items() if _reads_environment(path)}
    assert readers <= ENV_READERS, sorted(readers - ENV_READERS)
    assert "skiff.worker.config" in readers


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --------------------------------------------------------------------------- the checks check


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_a_lazy_import_cycle_is_found(tmp_path: Path) -> None:
    # The shape the SDK had: worker imports progress at the top, progress imports worker in a function.
    src = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/worker.py": "from pkg import progress\n",
            "pkg/progress.py": "def run():\n    from pkg.worker import Config\n",
            "pkg/other.py": "from .worker import x\nimport fastapi.routing\n",
        },
    )
    internal, external = _graph(src)
    assert internal["pkg.other"] == {"pkg.worker"}
    assert external["pkg.other"] == {"fastapi"}
    assert _cycle(internal) in (
        ["pkg.progress", "pkg.worker", "pkg.progress"],
        ["pkg.worker", "pkg.progress", "pkg.worker"],
    )


def test_an_environment_read_is_found(tmp_path: Path) -> None:
    src = _write(
        tmp_path,
        {"a.py": "import os\nx = os.environ.get('X')\n", "b.py": "from os import getenv\n", "c.py": "import os\n"},
    )
    assert [_reads_environment(src / f) for f in ("a.py", "b.py", "c.py")] == [True, True, False]
