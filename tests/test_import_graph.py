"""The import graph of the library has no cycles, and the environment contract sits at the bottom.

Every ``import`` / ``from ... import`` in ``gfn/``, ``envs/`` (installed as ``gfn.envs``) and
``objectives/`` (``gfn.objectives``) counts, at module level or inside functions (a deferred
import is still a dependency; it only hides the cycle until run time).  Imports under
``if TYPE_CHECKING:`` are skipped: they never run.  Importing a package's submodule is not
counted as depending on the package's ``__init__`` (Python runs it, but every package does).
"""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {"gfn": "gfn", "envs": "gfn.envs", "objectives": "gfn.objectives"}
#: the environment contract: nothing here may reach policies, samplers, objectives or run machinery
CONTRACT = ("gfn.env", "gfn.states", "gfn.trajectories", "gfn.ops", "gfn.distributions", "gfn.layout")
ABOVE_CONTRACT = ("gfn.estimators", "gfn.continuous", "gfn.sampler", "gfn.trainer", "gfn.objectives",
                  "gfn.runner", "gfn.cli", "gfn.config", "gfn.conditioning")


def modules() -> dict:
    """Module name -> source path, for every .py file of the three packages."""
    out = {}
    for folder, prefix in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix] + parts)] = path
    return out


def _type_checking_nodes(tree) -> set:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(id(n) for n in ast.walk(sub))
    return skip


def import_graph() -> dict:
    """Module -> set of library modules it imports (anywhere in its source)."""
    mods = modules()

    def owner(name: str):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        skip = _type_checking_nodes(tree)
        deps = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # `from pkg import sub` depends on pkg.sub when it is a module, else on pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            deps.update(t for t in map(owner, targets) if t is not None)
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycle(graph: dict):
    """One import cycle as a list of modules (first = last), or None."""
    state, stack = {}, []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_the_parser_sees_module_level_and_deferred_imports():
    graph = import_graph()
    assert "gfn.env" in graph["gfn.estimators"]  # module level
    assert "gfn.kernels" in graph["gfn.ops"]  # inside a function
    assert "gfn.objectives.base" in graph["gfn.objectives.tb"]  # objectives/ is gfn.objectives
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_environment_contract_imports_nothing_above_it():
    graph = import_graph()
    for root in CONTRACT:
        if root not in graph:
            continue
        seen, todo = set(), [root]
        while todo:
            for dep in graph[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        above = sorted(d for d in seen if d.startswith(ABOVE_CONTRACT))
        assert not above, f"{root} depends on {above} (policies, samplers, objectives or run machinery)"
