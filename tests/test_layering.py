"""Imports flow one way (DESIGN.md): an ast walk over bert_jax/, imports inside functions included, finds no
cycle and no import against the flow."""

from layering_helpers import import_graph

AGAINST_THE_FLOW = {
    "models": {"data", "objectives", "train", "checkpoint"},
    "data": {"models", "objectives", "train"},
    "objectives": {"train"},
    "checkpoint": {"train"},
    "parallel": {"train"},
    "files": {"models", "data", "objectives", "train", "checkpoint", "convert", "recipes", "parallel"},
    "recipes": {"data", "train", "checkpoint"},
}


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
