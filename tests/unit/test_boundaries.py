"""The arrows of the layout point one way: inference never reaches into training, accelerate or
W&B; only training/distributed.py talks to accelerate; the model is pure torch."""

import ast
from pathlib import Path

import lenet_dist

PACKAGE = Path(lenet_dist.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    return names | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def _module_file(name: str) -> Path | None:
    rel = Path(*name.split(".")[1:])
    for candidate in (PACKAGE / rel.with_suffix(".py"), PACKAGE / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _reachable(start: Path) -> set[str]:
    """Every module imported from `start`, following lenet_dist's own modules."""
    seen, todo, found = set(), [start], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            found.add(name)
            if name.startswith("lenet_dist.") and (f := _module_file(name)) is not None:
                todo.append(f)
    return found


def test_inference_imports_neither_training_accelerate_nor_wandb():
    for path in [*(PACKAGE / "inference").glob("*.py"), *(PACKAGE / "serve").glob("*.py")]:
        reached = _reachable(path)
        bad = {m for m in reached if m.split(".")[0] in ("accelerate", "wandb") or m.startswith("lenet_dist.training")}
        assert not bad, f"{path.name} reaches {sorted(bad)}"


def test_only_the_distributed_module_imports_accelerate():
    users = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
             if any(m.split(".")[0] == "accelerate" for m in _imports(p))}
    assert users == {"training/distributed.py"}


def test_model_module_is_pure_torch():
    assert _imports(PACKAGE / "model.py") - {"lenet_dist"} <= {"__future__", "torch", "torch.nn"}


def test_the_opt_in_cpu_kernels_are_one_module_that_only_training_reaches():
    def imports_it(path: Path) -> bool:
        tree = ast.parse(path.read_text())
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        return any("cpu_speedups" in (getattr(n, "module", None) or "")
                   or any(a.name == "cpu_speedups" for a in n.names) for n in nodes)

    users = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if imports_it(p)}
    assert users == {"training/train.py"}
    assert {m.split(".")[0] for m in _imports(PACKAGE / "training" / "cpu_speedups.py")} <= {
        "__future__", "functools", "torch"}


def test_no_module_is_over_about_200_lines():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 210} == {}


def test_no_import_cycle_between_the_packages_modules():
    """Type-checking imports count too: a cycle there is a design knot (it was loop <-> summary)."""
    modules = {f"lenet_dist.{p.relative_to(PACKAGE).with_suffix('').as_posix().replace('/', '.')}": p
               for p in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in graph[name]:
            assert state.get(dep) != 1, f"import cycle: {' -> '.join([*path, name, dep])}"
            if dep not in state:
                visit(dep, [*path, name])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [])
