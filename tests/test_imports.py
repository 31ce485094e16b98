"""The import graph of the project's modules is one-way: fsae <- envs <- rl <- scripts, and without cycles.

Two checks. The graph parsed from the source (``ast``, every import statement including those inside functions,
relative imports resolved, ``from package import module`` counted as an import of that module): no module imports
from a layer above its own, and no two modules reach each other. And every module imported alone, first in a fresh
interpreter (one subprocess, the project's modules dropped from ``sys.modules`` between two imports), so that an import
that works only when some other module happens to be imported first fails here.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("fsae", "envs", "rl", "scripts")  # each may import from the ones before it, never from those after
ANALYSIS = ("rl.compare", "rl.shift")  # reading finished runs: must not depend on the sweep machinery...
# ... that plans and launches them
ORCHESTRATION = ("rl.sweep", "rl.sweep_local", "rl.sweep_ray", "rl.sweep_trial", "rl.ray_cluster")
OPTIONAL_EXTRAS = ("ray", "minigrid", "ale_py")  # a module importing one at its top may fail where it is missing


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the packages, and ``scripts.<name>`` for each script."""
    modules = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = project_modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The project modules that ``name`` (the module in ``path``) imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in MODULES:  # fsae.model.FSAE -> fsae.model; outside the project -> ""
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from ..pkg import y
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:  # from fsae import data: the module fsae.data if there is one
                add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def layer(name: str) -> int:
    return LAYERS.index(name.split(".")[0])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_parser_sees_every_kind_of_import(tmp_path):
    source = tmp_path / "example.py"  # read as if it were fsae/characteristics/example.py
    source.write_text(
        "import numpy as np\n"
        "import fsae.model\n"
        "from fsae import data\n"  # a module of a package
        "from fsae.config import ConfigError, load_config\n"  # names of a module
        "from . import common\n"  # relative, this package
        "from ..checkpoint import load_fsae\n"  # relative, the package above
        "def f():\n"
        "    from envs.digits import DigitBandit\n"  # inside a function
        "    import rl.sweep as sweep\n"
    )
    assert imports_of("fsae.characteristics.example", source) == {
        "fsae.model",
        "fsae.data",
        "fsae.config",
        "fsae.characteristics.common",
        "fsae.checkpoint",
        "envs.digits",
        "rl.sweep",
    }
    assert len(MODULES) > 30 and {"fsae.model", "envs", "rl.common_sense", "scripts.train_agent"} <= set(MODULES)
    toy = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(toy) == [["a", "b", "c"]]


def test_layers_import_one_way():
    upward = sorted(f"{a} imports {b}" for a, targets in GRAPH.items() for b in targets if layer(b) > layer(a))
    assert upward == [], f"imports against fsae <- envs <- rl <- scripts: {upward}"


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for m in GRAPH[todo.pop()] - seen:
            seen.add(m)
            todo.append(m)
    return seen


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_analysis_does_not_depend_on_orchestration():
    assert {a: sorted(reachable(a) & set(ORCHESTRATION)) for a in ANALYSIS} == {a: [] for a in ANALYSIS}


IMPORT_EACH = """
import importlib, importlib.util, json, sys
names, root, optional = json.loads(sys.argv[1]), sys.argv[2], set(json.loads(sys.argv[3]))
failed, skipped = {}, {}
project = ("fsae", "envs", "rl", "scripts_")
for name in names:
    for key in [k for k in sys.modules if k.split(".")[0] in project or k.startswith(project)]:
        del sys.modules[key]
    try:
        if name.startswith("scripts."):  # not a package: loaded by path, as pytest's load_script does
            short = name.split(".")[1]
            spec = importlib.util.spec_from_file_location(f"scripts_{short}", f"{root}/scripts/{short}.py")
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        else:
            importlib.import_module(name)
    except ModuleNotFoundError as e:  # skipped only when the optional package itself is not installed
        top = (e.name or "").split(".")[0]
        missing = top in optional and importlib.util.find_spec(top) is None
        (skipped if missing else failed)[name] = repr(e)
    except Exception as e:
        failed[name] = repr(e)
print(json.dumps({"failed": failed, "skipped": skipped}))
"""


def test_each_module_imports_alone(tmp_path):
    names = sorted(MODULES)
    cmd = [sys.executable, "-c", IMPORT_EACH, json.dumps(names), str(ROOT), json.dumps(OPTIONAL_EXTRAS)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # this tree's code, not an installed copy
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["failed"] == {}
    # Skipped: only modules whose optional extra is not installed (the subprocess checks), so none where every extra
    # is installed, as in CI.
    if all(importlib.util.find_spec(m) is not None for m in OPTIONAL_EXTRAS):
        assert result["skipped"] == {}
