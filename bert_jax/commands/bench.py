"""`bert-jax bench`: the train step's speed, compile time, memory and MFU, optionally against PyTorch."""

import argparse
import json
import sys
import tempfile

from bert_jax import cli, config as config_lib
from bert_jax.bench import run as bench, torch_reference
from bert_jax.errors import UserError

HELP = ("time the real train step (median after warm-up), its compile time, peak host memory and MFU against "
        "this machine's measured matmul peak, and the input pipeline; --compare-hf adds the family's transformers "
        "model in PyTorch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  cli.add_config_argument(parser)
  parser.add_argument("--batch", type=int, help="global batch size (default: the config's train.batch_size)")
  parser.add_argument("--seq", type=int, help="sequence length (default: the config's data.seq_len)")
  parser.add_argument("--steps", type=int, default=10, help="timed steps per framework (default 10)")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first (default 2)")
  parser.add_argument("--rounds", type=int, default=5,
                      help="the timed steps come in this many rounds, alternating frameworks (with --compare-hf each "
                           "round starts with one untimed step; default 5)")
  parser.add_argument("--compare-hf", action="store_true",
                      help="also train the family's transformers model in PyTorch from the same initial parameters "
                           "on the same batches")
  parser.add_argument("--pipeline-batches", type=int, default=20,
                      help="batches read to time the input pipeline (0: skip it; default 20)")
  parser.add_argument("--workdir", help="where the pipeline's tokenizer and data are prepared (default: a temporary "
                                        "directory)")
  parser.add_argument("--json", action="store_true", help="print one JSON object")


def _check(args) -> None:
  if args.steps < 1 or args.rounds < 1 or args.warmup < 0 or args.pipeline_batches < 0:
    raise UserError("--steps and --rounds must be >= 1, --warmup and --pipeline-batches >= 0")
  for name in ("batch", "seq"):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      raise UserError(f"--{name} must be a positive integer")
  if args.compare_hf:
    try:
      import torch  # noqa: F401
      import transformers  # noqa: F401
    except ImportError:
      raise UserError("--compare-hf needs torch and transformers: pip install -e '.[bench]'") from None


def run(args) -> int:
  _check(args)
  config = config_lib.load_config(args.config, args.overrides)
  overrides = [o.removeprefix("--config.") for o in args.overrides]
  derived = bench.bench_overrides(config, args.batch, args.seq, overrides)
  overrides += derived
  sized = config_lib.load_config(args.config, overrides)  # a bad size stops here, before any worker starts
  if args.compare_hf:
    torch_reference.check_hf_comparable(sized)
  stream = sys.stderr if args.json else sys.stdout
  say = lambda message: print(message, file=stream, flush=True)
  if derived:
    say("sized for the benchmark: " + " ".join(derived))
  result = bench.run_benchmark(args.config, [*overrides, "data.source=synthetic"], args.steps, args.warmup,
                               args.rounds, args.compare_hf, say)
  result["pipeline_tokens_per_second"] = None
  if args.pipeline_batches:
    say("timing the input pipeline")
    workdir = args.workdir or tempfile.mkdtemp(prefix="bert_jax_bench_")
    pipeline_config = bench.pipeline_config(args.config, overrides)
    result["pipeline_tokens_per_second"] = bench.pipeline_tokens_per_second(
        pipeline_config, workdir, args.pipeline_batches, warmup=2)
  if args.json:
    print(json.dumps(result))
  else:
    print(report(result))
  return 0


def _gib(n: int) -> str:
  return f"{n / 2 ** 30:.2f} GiB"


def report(r: dict) -> str:
  mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
  lines = [
      f"{r['config']}: batch {r['batch_size']} x {r['seq_len']} tokens, {r['dtype']}, "
      f"{r['device_count']} x {r['device_kind']} "
      f"({r['cpu_count']} CPUs); median of {r['steps']} steps in {r['rounds']} rounds",
      f"  model FLOPs per token {r['flops_per_token'] / 1e9:.3f} G; measured matmul peak "
      f"{r['matmul_peak_flops'] / 1e9:,.0f} GFLOP/s (XLA)"
      + (f", {r['hf']['matmul_peak_flops'] / 1e9:,.0f} GFLOP/s (PyTorch)" if "hf" in r else ""),
      f"  JAX      {r['tokens_per_second']:>10,.0f} tokens/s  step {r['step_seconds']:.3f} s  MFU {mfu}  "
      f"compile {r['compile_seconds']:.1f} s  peak host memory {_gib(r['peak_host_memory_bytes'])}  "
      f"recompilations {r['recompilations']}"]
  if r["mfu_vs_chip_peak"] is not None:
    lines.append(f"  MFU against the chip's {r['chip_peak_flops'] / 1e12:,.0f} TFLOP/s bfloat16 peak: "
                 f"{100 * r['mfu_vs_chip_peak']:.1f}%  peak device memory {_gib(r['peak_device_memory_bytes'] or 0)}")
  if "hf" in r:
    hf = r["hf"]
    lines.append(f"  PyTorch  {hf['tokens_per_second']:>10,.0f} tokens/s  step {hf['step_seconds']:.3f} s  "
                 f"MFU {100 * hf['mfu']:.1f}%  peak host memory {_gib(hf['peak_host_memory_bytes'])}  "
                 f"(transformers {hf['architecture']}, {hf['optimizer']}, {hf['compute']}, {hf['torch_threads']} "
                 "threads)")
    lines.append(f"  first step's loss (same parameters and batch; dropout masks differ): JAX {r['first_loss']:.4f}, "
                 f"PyTorch {hf['first_loss']:.4f}")
    lines.append(f"  JAX / PyTorch: {r['speedup_vs_hf']:.2f}x tokens/s (same run, alternating rounds; on a shared "
                 "machine compare ratios, not absolute numbers)")
  if r["pipeline_tokens_per_second"] is not None:
    lines.append(f"  input pipeline {r['pipeline_tokens_per_second']:,.0f} tokens/s")
  return "\n".join(lines)
