"""Shared by tests/test_layering.py, tests/test_bench.py and tests/test_test_layout.py: who imports whom, found by
an ast walk (imports inside functions included), over bert_jax/ and over tests/."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "bert_jax"


def module_name(path: Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
  """bert_jax's modules, each with the bert_jax modules it imports."""
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


def imported_names(source: str) -> set[str]:
  """The top-level module of every absolute import in a Python source (`import a.b`, `from a.b import c`: a)."""
  names = set()
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      names |= {alias.name.split(".")[0] for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
      names.add(node.module.split(".")[0])
  return names
