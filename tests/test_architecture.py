"""The layout's rules, checked on the source: no import cycles, each layer imports only the
layers below it (docs/architecture.md), and ``import hwsim`` stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hwsim"

# Lowest first. A module may import its own layer and the layers below it, never above.
LAYERS = [
    {
        "hwsim.errors",
        "hwsim.units",
        "hwsim.dtypes",
        "hwsim.format",
        "hwsim.labels",
        "hwsim.lean",
        "hwsim.safe_read",
        "hwsim.safe_write",
        "hwsim.tables",
    },
    {"hwsim.profiles"},
    {"hwsim.model"},
    {"hwsim.perf"},
    {"hwsim.inference", "hwsim.serving", "hwsim.training"},
    {"hwsim.planner", "hwsim.rag"},
    {"hwsim.report", "hwsim.deploy"},
    {"hwsim.cli", "hwsim.web"},  # the web page sits beside the CLI and uses its helpers
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(name: str) -> str | None:
    """The hwsim module an import of ``name`` loads (a name inside a module -> that module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (type-only imports never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *runtime_nodes(child)])
            continue
        yield node
        yield from runtime_nodes(node)


def imports_of(module: str) -> set[str]:
    """Every hwsim module ``module`` imports at run time anywhere in its source: deferred
    imports inside functions count (a deferred import is still a dependency)."""
    tree = ast.parse(MODULES[module].read_text())
    is_package = MODULES[module].name == "__init__.py"
    base = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                prefix = f"{anchor}.{node.module}" if node.module else anchor
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        else:
            continue
        for name in names:
            if name == "hwsim" or name.startswith("hwsim."):
                target = resolve(name)
                if target and target != module and target != "hwsim":
                    found.add(target)
    return found


GRAPH = {m: imports_of(m) for m in MODULES if m != "hwsim"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in colour and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_module_import_graph_has_no_cycles():
    assert find_cycle(GRAPH) is None


def layer_of(module: str) -> int:
    for rank, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return rank
    raise AssertionError(f"{module} belongs to no layer; add it to LAYERS and the docs")


def test_every_module_imports_only_its_layer_and_below():
    upward = [
        f"{m} -> {t}"
        for m, targets in sorted(GRAPH.items())
        for t in sorted(targets)
        if layer_of(t) > layer_of(m)
    ]
    assert upward == []


def test_serving_does_not_know_the_performance_model():
    """The serving simulator takes any step-time model; it imports no pricing."""
    leaks = [
        f"{m} -> {t}"
        for m, targets in GRAPH.items()
        if m.startswith("hwsim.serving")
        for t in targets
        if not (t.startswith("hwsim.serving") or layer_of(t) == 0)
    ]
    assert leaks == []


@pytest.mark.parametrize(
    "heavy", ["matplotlib", "hwsim.planner.plan", "hwsim.serving.simulator", "hwsim.report"]
)
def test_import_hwsim_loads_no_planner_serving_or_plotting(heavy):
    code = f"import sys, hwsim; print({heavy!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_cli_loads_the_training_spec_but_not_the_training_stack():
    """The training flags read TrainingSpec's fields; the rest of hwsim.training (its pricing
    and search) loads on first use (hwsim.lean.lazy_names), and its names still resolve."""
    code = (
        "import sys, hwsim.cli.main, hwsim.training as t; "
        "print('hwsim.training.spec' in sys.modules, 'hwsim.training.api' in sys.modules, "
        "all(getattr(t, n) is not None for n in t.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False", "True"]


def test_public_names_still_resolve():
    code = (
        "import hwsim; "
        "print(all(callable(getattr(hwsim, n)) for n in hwsim.__all__ if n != '__version__'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


# Where the deployment settings may be spelled out as a list: the spec itself, the legacy YAML
# sections folded into it, and the serving simulator's own input (serving stays independent).
SPELLS_OUT_SETTINGS = {
    "hwsim.profiles.deployment": "defines DeploymentSpec",
    "hwsim.profiles.scenario": "folds the legacy parallel/precision sections into the spec",
    "hwsim.serving.scheduler": "SchedulerConfig, the simulator's own input schema",
}


def deployment_lists(source: str, label: str, fields: set[str], at_least: int = 3) -> list[str]:
    """Places in ``source`` that spell out ``at_least`` deployment settings by name: function
    parameters, keyword arguments of one call, keys of one dict literal, fields of one class."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            names = [p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
        elif isinstance(node, ast.Call):
            names = [k.arg for k in node.keywords if k.arg]
        elif isinstance(node, ast.Dict):
            names = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        elif isinstance(node, ast.ClassDef):
            names = [
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            ]
        hits = sorted(set(names) & fields)
        if len(hits) >= at_least:
            found.append(f"{label}:{node.lineno} {type(node).__name__} {hits}")
    return found


def test_the_deployment_list_finder_finds_planted_lists():
    fields = {"tp", "pp", "dp", "kv_dtype"}
    code = (
        "def f(model, tp=1, pp=1, kv_dtype='bf16'):\n"
        "    g(tp=tp, pp=pp, dp=1)\n"
        "    return {'tp': 1, 'pp': 1, 'kv_dtype': 'bf16'}\n"
        "class C:\n    tp: int\n    pp: int\n    dp: int\n"
        "h(tp=1, pp=2)\n"
    )
    kinds = [hit.split()[1] for hit in deployment_lists(code, "planted", fields)]
    assert sorted(kinds) == ["Call", "ClassDef", "Dict", "FunctionDef"]


def test_no_repeated_deployment_argument_lists():
    """Deployment settings travel as one DeploymentSpec: no function, call, dict or class
    outside SPELLS_OUT_SETTINGS names three or more of its fields."""
    from hwsim.profiles.deployment import DeploymentSpec

    fields = set(DeploymentSpec.model_fields)
    found = [
        hit
        for module in sorted(MODULES)
        if module not in SPELLS_OUT_SETTINGS
        for hit in deployment_lists(MODULES[module].read_text(), module, fields)
    ]
    assert found == []


def test_validation_imports_no_cli_module():
    """Calibration code reads hardware data (profiles' `match:` lists), never the CLI."""
    root = PACKAGE.parent / "validation"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("hwsim.cli")]
    assert offenders == []


def test_the_architecture_page_names_only_files_that_exist():
    """docs/architecture.md stays true to the tree: every path it names in backticks exists
    (relative to the repository, hwsim/ or the layer folder it is listed under)."""
    import re

    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`([a-z_/]+\.py|[a-z_]+/[a-z_/]*)`", doc))
    roots = [PACKAGE.parent, PACKAGE, *(p for p in PACKAGE.iterdir() if p.is_dir())]
    missing = sorted(n for n in named if not any((r / n).exists() for r in roots))
    assert named and missing == []


def test_a_capacity_plan_without_a_report_loads_no_matplotlib():
    """matplotlib (~0.3 s) loads only when a plot or a report is asked for."""
    code = "import sys, hwsim.cli.main, hwsim.cli.plan_capacity; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
