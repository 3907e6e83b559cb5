"""One family in one place: each family registers its descriptor (models/family.py's Family) in its model module, and
nothing else in bert_jax/ switches on a family's name; each objective names the families it serves."""

import ast
import importlib
from pathlib import Path
import re

import pytest

from bert_jax import config as config_lib, models, objectives, recipes
from bert_jax.errors import UserError
from bert_jax.models.family import Family, Framing

PACKAGE = Path(__file__).resolve().parent.parent / "bert_jax"
OWN = {PACKAGE / "models" / f"{module.rsplit('.', 1)[1]}.py" for module in models.FAMILIES.values()}
NAMES = "|".join(re.escape(name) for name in models.FAMILIES)
COMPARISONS = [
    re.compile(rf"""family\b[^=!\n]{{0,12}}?(==|!=|\bnot\s+in\b|\bin\b)\s*[(\[{{]?\s*["']({NAMES})["']"""),
    re.compile(rf"""["']({NAMES})["']\s*(==|!=)\s*[\w.\[\]()"']*family\b"""),
]
CONFIG_OF = {"bert": "bert_tiny", "xlnet": "xlnet_tiny", "t5": "t5_tiny", "electra": "electra_tiny",
             "spanbert": "spanbert_tiny", "gpt2": "gpt2_tiny", "bart": "bart_tiny",
             "distilbert": "distilbert_tiny", "ernie": "ernie_tiny"}


def sources():
  return sorted(PACKAGE.rglob("*.py"))


def family_comparisons(text: str) -> list[str]:
  return [line.strip() for line in text.splitlines() if any(p.search(line) for p in COMPARISONS)]


def test_the_grep_finds_a_comparison_on_a_familys_name():
  assert family_comparisons('  if c.model.family == "t5":  # text to text')
  assert family_comparisons('  if model.get("family") != "bert":')
  assert family_comparisons('  if config.model.get("family", None) in ("t5", "bart"):')
  assert family_comparisons('  return "gpt2" == config.model.family')
  assert not family_comparisons('  family = models.descriptor(config.model)')
  assert not family_comparisons('  if families is not None and family not in families:')


def test_nothing_outside_a_familys_own_module_compares_its_name():
  found = [f"{path.relative_to(PACKAGE.parent)}: {line}" for path in sources() if path not in OWN
           for line in family_comparisons(path.read_text())]
  assert found == []


def _strings(path: Path) -> list[str]:
  tree = ast.parse(path.read_text())
  docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
  return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
          and id(node) not in docstrings]


def test_one_framing_table_the_descriptors():
  """Framing templates (a text "$A" among other parts) are written in the family modules only; fine-tuning and
  exports read them from there."""
  holders = {path for path in sources() for text in _strings(path) if "$A" in text and text.strip() != "$A"}
  assert holders <= OWN, sorted(str(p) for p in holders - OWN)
  for module in ("bert_jax.recipes", "bert_jax.objectives.classification", "bert_jax.convert.tokenizer_export"):
    assert not {"FRAMINGS", "TEMPLATES"} & set(vars(importlib.import_module(module))), module
  names = [name for f in models.descriptors() for name in f.framings]
  assert len(names) == len(set(names))  # each framing has one owner


@pytest.mark.parametrize("name", sorted(models.FAMILIES))
def test_a_familys_descriptor_is_complete(name):
  family = models.descriptor({"family": name})
  assert isinstance(family, Family) and family.name == name
  assert family.objective in objectives.OBJECTIVES
  assert name in objectives.objective_class(config_lib.load_config(CONFIG_OF[name])).FAMILIES
  assert config_lib.load_config(CONFIG_OF[name]).objective.name == family.objective  # its recipe trains it
  converter = importlib.import_module(family.converter)
  assert callable(converter.to_hf) and (callable(getattr(converter, "from_hf", None)) or not family.hf_types)
  for hf_type, recipe in family.hf_types.items():
    assert callable(getattr(recipes, recipe)), (hf_type, recipe)
  for framing in family.framings.values():
    assert isinstance(framing, Framing) and "$A" in framing.single and "$A" in framing.pair and "$B" in framing.pair
  assert models.framing(family.framing) and all(models.framing(f) for f in family.framing_by_packing.values())
  assert family.finetune is None or callable(family.finetune)
  assert family.bench_references, "each family's pretraining objective has a transformers reference"
  for objective, reference in family.bench_references.items():
    module, cls = reference.split(":")
    assert objective in objectives.OBJECTIVES and isinstance(getattr(importlib.import_module(module), cls), type)
  assert isinstance(family.hf_sentinels, int) and all(isinstance(key, str) for key in family.hf_eod_ids)


def test_hf_model_types_and_framings_have_one_owner():
  types = [hf_type for f in models.descriptors() for hf_type in f.hf_types]
  assert len(types) == len(set(types))


def _objective_class(name: str) -> type:
  module_name, class_name = objectives.OBJECTIVES[name].split(":")
  return getattr(importlib.import_module(module_name), class_name)


SERVING = sorted(name for name in objectives.OBJECTIVES if _objective_class(name).FAMILIES is not None)


@pytest.mark.parametrize("name", sorted(objectives.OBJECTIVES))
def test_each_objective_declares_the_families_it_serves(name):
  cls = _objective_class(name)
  assert "FAMILIES" in vars(cls), f"{name} declares no FAMILIES of its own"
  assert cls.FAMILIES is None or (isinstance(cls.FAMILIES, tuple) and set(cls.FAMILIES) <= set(models.FAMILIES))


@pytest.mark.parametrize("name", SERVING)
def test_a_wrong_pairing_is_refused_when_the_config_loads(name):
  served = _objective_class(name).FAMILIES
  other = next(f for f in sorted(models.FAMILIES) if f not in served)
  with pytest.raises(UserError, match=rf"^objective {name} serves families {', '.join(served)}; model.family is "
                                      rf"{other}$"):
    config_lib.load_config(CONFIG_OF[other], [f"objective.name={name}"])
