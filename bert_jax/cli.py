"""The `bert-jax` command. Each subcommand lives in bert_jax/commands/<name>.py and defines
HELP, add_arguments(parser) and run(args) -> exit code. `--config.a.b=value` overrides are
collected from any position into `args.overrides`."""

import argparse
import contextlib
import glob
import importlib
import logging
import os
import sys

from bert_jax.errors import UserError

COMMANDS = ("train", "finetune", "evaluate", "params", "config", "tokenizer", "prepare", "convert", "plan", "bench",
            "predict", "augment")


def _commands() -> dict:
  return {name: importlib.import_module(f"bert_jax.commands.{name}") for name in COMMANDS}


def add_config_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
  parser.add_argument("--config", required=required, default=None if required else "demo",
                      help="a config file (configs/bert_base.py) or its name (bert_base); "
                           "override keys with --config.section.key=value")


def parse(argv: list[str]) -> argparse.Namespace:
  commands = _commands()
  parser = argparse.ArgumentParser(prog="bert-jax", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  for name, module in commands.items():
    p = sub.add_parser(name, help=module.HELP, description=module.HELP)
    module.add_arguments(p)
    p.set_defaults(run=module.run)
  overrides = [a for a in argv if a.startswith("--config.")]
  rest = [a for a in argv if not a.startswith("--config.")]
  args = parser.parse_args(rest)
  args.overrides = overrides
  return args


def _quiet_library_logs() -> None:
  """Orbax logs each failure of a background save as a long traceback on absl's logger; the run reports such a
  failure itself, in one line. BERT_JAX_VERBOSE=1 keeps the libraries' logs."""
  if os.environ.get("BERT_JAX_VERBOSE") != "1":
    logging.getLogger("absl").setLevel(logging.CRITICAL)


def _cpu_only_without_accelerators() -> None:
  """With libtpu installed (the tpu and test extras: `plan --topology`) on a machine without a TPU, JAX's TPU backend
  fails to start and libtpu writes its warnings on every command: where no TPU (PCI vendor 0x1ae0) and no GPU is
  attached and JAX_PLATFORMS is unset, JAX runs on the CPU alone. The TPU compiler stays reachable for plan; so does
  the CUDA compiler, whose plugin (the cuda extra, `plan --gpu`) would likewise fail to start without a GPU."""
  from bert_jax import gpu_targets, topology  # no JAX import: the platforms are set before JAX starts

  if "JAX_PLATFORMS" in os.environ or not (topology.libtpu_installed() or gpu_targets.cuda_plugin_installed()):
    return
  vendors = []
  for path in glob.glob("/sys/bus/pci/devices/*/vendor"):
    with contextlib.suppress(OSError), open(path) as f:
      vendors.append(f.read().strip())
  if "0x1ae0" not in vendors and not glob.glob("/dev/nvidia[0-9]*") and not os.path.exists("/dev/kfd"):
    os.environ["JAX_PLATFORMS"] = "cpu"


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  _cpu_only_without_accelerators()
  _quiet_library_logs()
  try:
    args = parse(argv)
    return args.run(args) or 0
  except UserError as e:
    print(f"bert-jax: error: {e}", file=sys.stderr)
    return e.exit_code
  except KeyboardInterrupt:
    print("bert-jax: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
