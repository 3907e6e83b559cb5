"""`bert-jax convert`: import a local Hugging Face model directory, or export ours to one."""

import argparse
import sys

from bert_jax import cli, config as config_lib, convert, models, recipes
from bert_jax.convert import tokenizer_export, weights
from bert_jax.data import hf_tokenizer, pipeline, prepare as prepare_lib, tokenizer as tokenizer_lib
from bert_jax.errors import UserError
from bert_jax.files import storage, workdir as workdir_lib

HELP = ("convert weights: --from-hf DIR --output OUT writes OUT/config.py and OUT/params; "
        "--to-hf --config C --params P --output DIR writes config.json, model.safetensors and the tokenizer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  direction = parser.add_mutually_exclusive_group(required=True)
  direction.add_argument("--from-hf", metavar="DIR", help="a local Hugging Face model directory to import")
  direction.add_argument("--to-hf", action="store_true", help="export --params (with --config) to --output")
  cli.add_config_argument(parser, required=False)
  parser.set_defaults(config=None)
  parser.add_argument("--params", help="with --to-hf: an Orbax parameter checkpoint (OUT/params of an import) or "
                                       "a training checkpoint's step (WORKDIR/checkpoints/STEP)")
  parser.add_argument("--output", required=True, help="the directory to write")
  parser.add_argument("--tokenizer", help="with --to-hf: the SentencePiece .model to export with the weights "
                                          "(default: data.tokenizer, or the one the checkpoint's run prepared its "
                                          "data with)")


def write_config_file(path: storage.Path, recipe: str, model_config, source: str,
                      tokenizer: tuple[storage.Path, int] | None = None) -> None:
  """A config file that trains or evaluates the imported model: the family's recipe with its sizes, and the
  imported tokenizer (a file beside the config: (its path, its T5 sentinels)) when there is one."""
  recipe_config = getattr(recipes, recipe)()
  lines = [f'"""Imported from the Hugging Face model in {source}; pass this file as --config."""', "",
           "import os", "", "from bert_jax import recipes", "", "", "def get_config():",
           f"  c = recipes.{recipe}()", "  c.model.update({"]
  lines += [f"      {key!r}: {value!r}," for key, value in model_config.items()]
  lines.append("  })")
  if tokenizer:
    lines += ["  # The checkpoint's own tokenizer, so that prepare and train use its ids.",
              f"  c.data.tokenizer = os.path.join(os.path.dirname(os.path.abspath(__file__)), {tokenizer[0].name!r})",
              f"  c.data.extra_ids = {tokenizer[1]}"]
  positions = models.max_sequence_length(model_config)
  if positions is not None and recipe_config.data.seq_len > positions:
    lines.append(f"  c.data.seq_len = {positions}")
  lines.append("  return c")
  path.write_text("\n".join(lines) + "\n")


def import_hf(source: str, output: str) -> storage.Path:
  out = storage.path(output)
  if (out / "config.py").exists() or (out / "params").exists():
    raise UserError(f"{out} already holds a converted model; choose a new --output directory")
  state_dict, hf_config = weights.read_hf_dir(source)
  _, recipe = convert.family_and_recipe(hf_config)
  companions = {name: weights.read_hf_dir(storage.path(source) / name) for name in convert.companions(hf_config)
                if (storage.path(source) / name / "config.json").is_file()}  # ELECTRA: SOURCE/generator
  model_config, params = convert.from_hf(state_dict, hf_config, companions)
  out.mkdir(parents=True, exist_ok=True)
  tokenizer = import_tokenizer(source, out, hf_config, model_config)
  weights.save_params(out / "params", params)
  write_config_file(out / "config.py", recipe, model_config, source, tokenizer)
  return out


def import_tokenizer(source: str, out: storage.Path, hf_config: dict,
                     model_config) -> tuple[storage.Path, int] | None:
  """The checkpoint's tokenizer copied (or built) into `out`, checked against the model; None, with a warning,
  when the checkpoint has none."""
  sentinels = models.descriptor(model_config).hf_sentinels  # T5's <extra_id_N>
  imported = hf_tokenizer.import_files(source, out, sentinels=sentinels)
  if imported is None:
    print(f"warning: {source} has no tokenizer (tokenizer.json, spiece.model, vocab.json + merges.txt or "
          "vocab.txt); training will train a new one, whose ids the imported weights do not know", file=sys.stderr)
    return None
  tokenizer = tokenizer_lib.load(imported[0], imported[1])
  try:
    tokenizer_lib.check_model_fit(tokenizer, model_config)
  except UserError as error:
    print(f"warning: {error}", file=sys.stderr)
  print(f"wrote {imported[0]}: the checkpoint's tokenizer, {tokenizer.vocab_size} ids")
  return imported


def find_tokenizer(config, params_path: str, given: str | None) -> tokenizer_lib.Tokenizer | None:
  """--tokenizer, else data.tokenizer, else the tokenizer of the prepared data of the run whose checkpoint
  (WORKDIR/checkpoints/STEP) is exported; None when there is none."""
  path = given or config.data.tokenizer
  if path:
    tokenizer = tokenizer_lib.load(workdir_lib.resolve(path), config.data.extra_ids)
    tokenizer_lib.check_model_fit(tokenizer, config.model)
    return tokenizer
  item = weights.params_item(params_path)  # WORKDIR/checkpoints/STEP/params for a training checkpoint
  workdir = item.parent.parent.parent
  if item.parent.parent.name == "checkpoints" and prepare_lib.read_metadata(pipeline.prepared_dir(config, workdir)):
    return pipeline.load_tokenizer(config, workdir)
  return None


def task_labels(config) -> tuple[str, ...]:
  """The label names of a fine-tuning run's classification task (config.task); none for other models."""
  if "task" not in config or config.model.get("head") != "classification":
    return ()
  from bert_jax.data import tasks

  try:
    return tasks.load(config.task).labels
  except UserError as error:
    print(f"warning: the task's labels are unknown here ({error}); the export names them LABEL_0, LABEL_1, ...",
          file=sys.stderr)
    return ()


def export_hf(config_spec: str, overrides: list[str], params_path: str, output: str,
              tokenizer_path: str | None = None) -> tuple[storage.Path, bool]:
  """Writes the export; returns its directory and whether it holds a tokenizer."""
  config = config_lib.load_config(config_spec, overrides)
  tokenizer = find_tokenizer(config, params_path, tokenizer_path)
  params = weights.restore_params(params_path)
  hf_config, state_dict = convert.to_hf(config.model, params)
  labels = task_labels(config)
  if labels:  # a fine-tuned classifier: its labels by name, as the transformers pipelines print them
    hf_config.update(id2label={str(k): label for k, label in enumerate(labels)},
                     label2id={label: k for k, label in enumerate(labels)})
  if tokenizer:  # GPT-2's bos and eos: the tokenizer's end-of-text
    hf_config.update({key: tokenizer.eod_id for key in models.descriptor(config.model).hf_eod_ids})
  fast = tokenizer and tokenizer_export.fast_tokenizer(tokenizer, hf_config["model_type"],
                                                       models.max_sequence_length(config.model))
  companions = convert.to_hf_companions(config.model, params)
  out = storage.path(output)
  targets = [out / name for name in ("config.json", "model.safetensors", *companions)]
  taken = [str(t) for t in targets + [out / name for name in tokenizer_export.FILES if tokenizer] if t.exists()]
  if taken:
    raise UserError(f"{taken[0]} already exists; choose a new --output directory")
  weights.write_hf_dir(output, hf_config, state_dict)
  for name, (companion_config, companion_state) in companions.items():
    weights.write_hf_dir(storage.path(output) / name, companion_config, companion_state)  # ELECTRA: OUTPUT/generator
    print(f"wrote the {name} ({companion_config['architectures'][0]}) to {storage.path(output) / name}")
  if tokenizer:
    tokenizer_export.write(fast, tokenizer, output)
  note = getattr(convert.converter(config.model.family), "EXPORT_NOTE", "")  # what an export leaves out
  if note:
    print(f"note: {note}")
  return storage.path(output), tokenizer is not None


def check_output(output: str) -> None:
  """--output must be a directory (new or existing), never a file: checked before anything is read or written."""
  out = storage.path(output)
  if out.exists() and not out.is_dir():
    raise UserError(f"--output {output} is a file; give a directory to write into (a new one, or one without a "
                    "converted model)")


def run(args) -> int:
  output = workdir_lib.resolve(args.output)  # Orbax takes absolute paths only
  check_output(output)
  if args.from_hf:
    out = import_hf(workdir_lib.resolve(args.from_hf), output)
    print(f"wrote {out / 'config.py'} and {out / 'params'}; use --config {out / 'config.py'} "
          f"(continued pretraining: bert-jax train --config {out / 'config.py'} --init {out} --workdir W)")
    return 0
  if not args.params or not args.config:
    raise UserError("--to-hf needs --params (the parameter checkpoint) and --config (its model config)")
  out, with_tokenizer = export_hf(args.config, args.overrides, workdir_lib.resolve(args.params), output,
                                  args.tokenizer)
  if with_tokenizer:
    print(f"wrote {out / 'config.json'}, {out / 'model.safetensors'} and the tokenizer "
          f"({', '.join(tokenizer_export.FILES)})")
  else:
    print(f"wrote {out / 'config.json'} and {out / 'model.safetensors'}")
    print("warning: no tokenizer exported (no --tokenizer, no data.tokenizer, and --params is not a step of a run "
          "with prepared data), so AutoTokenizer cannot load this directory; pass --tokenizer PATH.model",
          file=sys.stderr)
  return 0
