"""Each objective's typed settings (bert_jax/objectives/settings.py): a frozen dataclass read once from
config.objective, whose defaults are what a config without the key runs, an unknown key refused with one line, and
every setting listed in a loaded config so that it takes an override."""

import dataclasses
import json

import pytest

from bert_jax import config as config_lib, objectives, recipes
from bert_jax.errors import UserError
from bert_jax.objectives import settings as settings_lib

# What the code fell back to where a recipe left the key out (config.objective.get(key, fallback) before the
# settings were typed); every other key was read without a fallback, and its default is the recipe's below.
FALLBACKS = {
    "masked_lm": {"ngram_weights": ()},
    "unilm": {"ngram_weights": (), "lm_segments": False},
    "replaced_token_detection": {"ngram_weights": ()},  # masked_lm's dataset, inherited
    "span_corruption": {"z_loss": 0.0},
    "text_to_text": {"z_loss": 0.0},
    "causal_lm": {"temperature": 0.0, "top_p": 1.0},
}

# The recipe that trains each objective; UniLM's masking defaults are BERT's, which its recipe builds on.
RECIPES = {
    "masked_lm": recipes.bert_config,
    "unilm": recipes.bert_config,
    "replaced_token_detection": recipes.electra_config,
    "span_boundary": recipes.spanbert_config,
    "permutation_lm": recipes.xlnet_config,
    "span_corruption": recipes.t5_config,
    "text_infilling": recipes.bart_config,
    "mass": recipes.mass_config,
    "causal_lm": recipes.gpt2_config,
    "distillation": recipes.distilbert_config,
    "classification": lambda: recipes.finetune_config(recipes.bert_config(), name="glue/sst2"),
    "question_answering": lambda: recipes.finetune_config(recipes.bert_config(), name="squad"),
    "text_to_text": lambda: recipes.finetune_config(recipes.t5_config(), name="glue/sst2"),
    "tinybert": recipes.tinybert_config,
    "tinybert_task": lambda: _named(recipes.finetune_config(recipes.tinybert_config(), name="glue/sst2"),
                                    "tinybert_task"),
}


def _named(config, objective: str):
  """A fine-tuning config whose objective is chosen as a user does (`--config.objective.name=...`)."""
  config_lib.apply_overrides(config, [f"objective.name={objective}"])
  return config


def test_every_objective_has_settings_and_a_recipe():
  assert set(RECIPES) == set(objectives.OBJECTIVES)
  for name in objectives.OBJECTIVES:
    cls = objectives.class_named(name).SETTINGS
    assert dataclasses.is_dataclass(cls) and issubclass(cls, settings_lib.Settings), name
    assert cls.__dataclass_params__.frozen, name


@pytest.mark.parametrize("name", sorted(objectives.OBJECTIVES))
def test_defaults_are_what_a_recipe_without_the_key_runs(name):
  """A key the code read with a fallback defaults to that fallback; any other key to the value of the recipe that
  trains the objective (which states every such key); and a config.objective of the name alone runs them."""
  cls = objectives.class_named(name).SETTINGS
  defaults = settings_lib.defaults(cls)
  recipe = RECIPES[name]().objective
  assert recipe.name == (name if name != "unilm" else "masked_lm")
  fallbacks = FALLBACKS.get(name, {})
  for key, default in defaults.items():
    if key in fallbacks:
      assert default == fallbacks[key], key
    else:
      assert key in recipe and recipe[key] == default, key
  assert objectives.settings_of({"name": name}) == cls()
  assert dataclasses.asdict(cls()) == defaults


@pytest.mark.parametrize("name", sorted(objectives.OBJECTIVES))
def test_an_unknown_objective_key_is_one_line_naming_the_known_keys(name):
  cls = objectives.class_named(name).SETTINGS
  known = ", ".join(f.name for f in dataclasses.fields(cls))
  with pytest.raises(UserError) as error:
    objectives.settings_of({"name": name, "mask_rat": 0.2})
  assert str(error.value) == f"unknown objective keys for objective {name}: mask_rat; it knows {known}"


def test_an_unknown_key_stops_the_config_load_and_the_objective(tmp_path):
  config = config_lib.load_config("bert_tiny")
  saved = json.loads(config.to_json())
  saved["objective"]["mask_rat"] = 0.2
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(UserError) as error:
    config_lib.load_config(str(tmp_path / "config.json"))
  message = str(error.value)
  assert message.startswith("unknown objective keys for objective masked_lm: mask_rat; it knows mask_rate, ")
  assert "\n" not in message
  config.objective.mask_rat = 0.2
  with pytest.raises(UserError, match="^unknown objective keys for objective masked_lm: mask_rat; it knows "):
    objectives.get_objective(config)


@pytest.mark.parametrize("name", config_lib.config_names())
def test_every_objective_section_lists_exactly_its_settings(name):
  """As config.model lists its family's settings: a loaded config's objective holds every setting, so each takes
  a --config.objective.KEY override, and the objective reads them from its settings."""
  config = config_lib.load_config(name)
  cls = objectives.objective_class(config).SETTINGS
  assert set(config.objective.keys()) == {"name"} | {f.name for f in dataclasses.fields(cls)}


def test_a_setting_the_recipe_leaves_out_takes_an_override():
  config = config_lib.load_config("bert_tiny", ["objective.max_ngram=2", "objective.ngram_weights=(0.7, 0.3)"])
  assert objectives.get_objective(config).settings.ngram_weights == (0.7, 0.3)
  config = config_lib.load_config("bert_tiny", ["objective.name=unilm", "objective.lm_segments=true",
                                                "model.type_vocab_size=6"])
  assert objectives.get_objective(config).settings.lm_segments is True
  config = config_lib.load_config("gpt2_tiny", ["objective.top_p=0.9"])
  assert objectives.get_objective(config).settings.top_p == 0.9


def test_a_config_saved_before_the_settings_were_typed_still_loads(tmp_path):
  """A config.json without the keys the code had fallbacks for loads with those fallbacks, and takes overrides."""
  saved = json.loads(config_lib.load_config("unilm_tiny").to_json())
  for key in ("ngram_weights", "lm_segments"):
    del saved["objective"][key]
  (tmp_path / "config.json").write_text(json.dumps(saved))
  settings = objectives.get_objective(config_lib.load_config(str(tmp_path / "config.json"))).settings
  assert (settings.ngram_weights, settings.lm_segments, settings.max_ngram) == ((), False, 3)
  saved = json.loads(config_lib.load_config("unilm_tiny").to_json())  # ngram_weights saved as a JSON list
  (tmp_path / "config.json").write_text(json.dumps(saved))
  settings = objectives.get_objective(config_lib.load_config(str(tmp_path / "config.json"))).settings
  assert settings.ngram_weights == (0.8, 0.1, 0.1)


@pytest.mark.parametrize("overrides,message", [
    (["objective.mask_rate=1.5"], "objective.mask_rate must be in (0, 1), got 1.5"),
    (["objective.max_predictions=0"], "objective.max_predictions must be a positive integer, got 0"),
    (["objective.max_predictions=200"], "objective.max_predictions must be in [1, data.seq_len=64], got 200"),
    (["objective.sentence_task=nxp"], "objective.sentence_task must be nsp, sop or none, got 'nxp'"),
    (["objective.packing=rows"], "objective.packing must be pairs or full_sentences, got 'rows'"),
    (["objective.random_token_fraction=0.5"],
     "objective.mask_token_fraction + objective.random_token_fraction must be in [0, 1], got 0.8 + 0.5"),
    (["objective.max_ngram=2", "objective.ngram_weights=(1.0,)"], "objective.ngram_weights must be 2"),
])
def test_a_bad_setting_is_one_line(overrides, message):
  with pytest.raises(UserError) as error:
    objectives.get_objective(config_lib.load_config("bert_tiny", overrides))
  assert message in str(error.value) and "\n" not in str(error.value)


def test_shared_checks_name_the_setting_and_its_range():
  @dataclasses.dataclass(frozen=True)
  class Example(settings_lib.Settings):
    rate: float = 0.5
    count: int = 3
    weight: float = 1.0

  settings_lib.check_interval(Example(), "rate", "(0, 1)")
  with pytest.raises(UserError, match=r"^objective.rate must be in \[0, 1\), got 1.0$"):
    settings_lib.check_interval(Example(rate=1.0), "rate", "[0, 1)")
  with pytest.raises(UserError, match=r"^objective.count must be an integer >= 4, got 3$"):
    settings_lib.check_interval(Example(), "count", "[4, inf)", integer=True)
  with pytest.raises(UserError, match=r"^objective.weight must be > 1 \(a note\), got 1.0$"):
    settings_lib.check_interval(Example(), "weight", "(1, inf)", " (a note)")
  with pytest.raises(UserError, match=r"^objective.count must be a positive integer, got 0$"):
    settings_lib.check_positive(Example(count=0), "count")
  with pytest.raises(UserError, match=r"^objective.rate must be a positive integer, got 0.5$"):
    settings_lib.check_positive(Example(), "rate")
