"""`bert-jax convert`: import a local Hugging Face model directory, or export ours to one."""

import argparse
from pathlib import Path

from bert_jax import cli, config as config_lib, convert, defaults, models, workdir as workdir_lib
from bert_jax.convert import files
from bert_jax.errors import UserError

HELP = ("convert weights: --from-hf DIR --output OUT writes OUT/config.py and OUT/params; "
        "--to-hf --config C --params P --output DIR writes config.json and model.safetensors")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  direction = parser.add_mutually_exclusive_group(required=True)
  direction.add_argument("--from-hf", metavar="DIR", help="a local Hugging Face model directory to import")
  direction.add_argument("--to-hf", action="store_true", help="export --params (with --config) to --output")
  cli.add_config_argument(parser, required=False)
  parser.set_defaults(config=None)
  parser.add_argument("--params", help="with --to-hf: an Orbax parameter checkpoint (OUT/params of an import) or "
                                       "a training checkpoint's step (WORKDIR/checkpoints/STEP)")
  parser.add_argument("--output", required=True, help="the directory to write")


def write_config_file(path: Path, recipe: str, model_config, source: str) -> None:
  """A config file that trains or evaluates the imported model: the family's recipe with its sizes."""
  recipe_config = getattr(defaults, recipe)()
  lines = [f'"""Imported from the Hugging Face model in {source}; pass this file as --config."""', "",
           "from bert_jax import defaults", "", "", "def get_config():", f"  c = defaults.{recipe}()",
           "  c.model.update({"]
  lines += [f"      {key!r}: {value!r}," for key, value in model_config.items()]
  lines.append("  })")
  positions = models.max_sequence_length(model_config)
  if positions is not None and recipe_config.data.seq_len > positions:
    lines.append(f"  c.data.seq_len = {positions}")
  lines.append("  return c")
  path.write_text("\n".join(lines) + "\n")


def import_hf(source: str, output: str) -> Path:
  out = Path(output)
  if (out / "config.py").exists() or (out / "params").exists():
    raise UserError(f"{out} already holds a converted model; choose a new --output directory")
  state_dict, hf_config = files.read_hf_dir(source)
  _, recipe = convert.family_and_recipe(hf_config)
  model_config, params = convert.from_hf(state_dict, hf_config)
  out.mkdir(parents=True, exist_ok=True)
  files.save_params(out / "params", params)
  write_config_file(out / "config.py", recipe, model_config, source)
  return out


def export_hf(config_spec: str, overrides: list[str], params_path: str, output: str) -> Path:
  config = config_lib.load_config(config_spec, overrides)
  hf_config, state_dict = convert.to_hf(config.model, files.restore_params(params_path))
  files.write_hf_dir(output, hf_config, state_dict)
  return Path(output)


def run(args) -> int:
  output = workdir_lib.resolve(args.output)  # Orbax takes absolute paths only
  if args.from_hf:
    out = import_hf(workdir_lib.resolve(args.from_hf), output)
    print(f"wrote {out / 'config.py'} and {out / 'params'}; use --config {out / 'config.py'}")
    return 0
  if not args.params or not args.config:
    raise UserError("--to-hf needs --params (the parameter checkpoint) and --config (its model config)")
  out = export_hf(args.config, args.overrides, workdir_lib.resolve(args.params), output)
  print(f"wrote {out / 'config.json'} and {out / 'model.safetensors'}")
  return 0
