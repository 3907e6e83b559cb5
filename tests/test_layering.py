"""Imports flow one way (DESIGN.md): an ast walk over bert_jax/, imports inside functions included, finds no
cycle and no import against the flow."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bert_jax"
AGAINST_THE_FLOW = {
    "models": {"data", "objectives", "train", "checkpoint"},
    "data": {"models", "objectives", "train"},
    "objectives": {"train"},
    "checkpoint": {"train"},
    "parallel": {"train"},
}


def module_name(path: Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
  modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
  graph = {name: set() for name in modules}
  for name, path in modules.items():
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
        targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
      else:
        continue
      graph[name] |= {target for target in targets if target in modules and target != name}
  return graph


def layer(name: str) -> str:
  parts = name.split(".")
  return parts[1] if len(parts) > 1 else parts[0]


def test_no_import_cycle():
  graph = import_graph()
  state: dict[str, str] = {}

  def visit(name: str, path: list[str]) -> None:
    state[name] = "open"
    for target in sorted(graph[name]):
      assert state.get(target) != "open", f"import cycle: {' -> '.join(path[path.index(target):] + [target])}"
      if target not in state:
        visit(target, path + [target])
    state[name] = "done"

  for name in sorted(graph):
    if name not in state:
      visit(name, [name])


def test_no_import_against_the_flow():
  wrong = [f"{source} -> {target}" for source, targets in import_graph().items() for target in sorted(targets)
           if layer(target) in AGAINST_THE_FLOW.get(layer(source), ())]
  assert wrong == []


def test_the_walk_sees_imports_inside_functions():
  assert "bert_jax.data.segments" in import_graph()["bert_jax.objectives.masked_lm"]  # imported in dataset()
