"""BERT-large at seq 512 and T5-large on an accelerator: bfloat16 compute, float32 parameters, scanned layers, the
per-chip batch below on every device; tokens/s, MFU against the chip's bfloat16 peak (bert_jax/chips.py), compile
time and device memory, each from `bert-jax bench --json`.

    python benchmarks/accelerator.py              # on a GPU or TPU machine, about 5 minutes
    python benchmarks/accelerator.py --tiny       # the same path with bert_tiny and t5_tiny at seq 64 (any machine)

Prints one line per case and, last, a Markdown table for the README.
"""

import argparse
import json
import subprocess
import sys

CASES = (  # (config, per-device batch, sequence length): BERT's phase-2 length; T5's 512 inputs (114 targets)
    ("bert_large", 32, 512),
    ("t5_large", 32, 512),
)
TINY = (("bert_tiny", 4, 64), ("t5_tiny", 4, 64))
SETTINGS = ["--config.model.dtype=bfloat16", "--config.model.scan_layers=True"]


def device_count() -> int:
  probe = "import jax; print(jax.device_count())"
  return int(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout)


def bench(config: str, batch: int, seq: int, steps: int) -> dict:
  command = [sys.executable, "-m", "bert_jax.cli", "bench", "--config", config, "--batch", str(batch), "--seq",
             str(seq), "--steps", str(steps), "--rounds", "2", "--warmup", "2", "--pipeline-batches", "0", "--json",
             *SETTINGS]
  print("$ " + " ".join(command[2:]), file=sys.stderr, flush=True)
  return json.loads(subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tiny", action="store_true", help="tiny configs at seq 64: checks the script anywhere")
  parser.add_argument("--steps", type=int, default=10, help="timed steps per case (default 10)")
  args = parser.parse_args()
  devices = device_count()
  rows = []
  for config, per_device, seq in TINY if args.tiny else CASES:
    r = bench(config, per_device * devices, seq, args.steps)
    mfu = f"{100 * r['mfu_vs_chip_peak']:.1f}%" if r["mfu_vs_chip_peak"] is not None else "n/a (no chip peak)"
    memory = r["peak_device_memory_bytes"] or r["peak_host_memory_bytes"]
    rows.append((f"{config} {r['batch_size']} x {seq}", r["device_kind"], r["device_count"],
                 f"{r['tokens_per_second']:,.0f}", mfu, f"{r['compile_seconds']:.1f} s", f"{memory / 2 ** 30:.1f} GiB"))
    print(" | ".join(str(x) for x in rows[-1]), flush=True)
  print("\n| case | device | devices | tokens/s | MFU (bf16 peak) | compile | peak memory |")
  print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
  for row in rows:
    print("| " + " | ".join(str(x) for x in row) + " |")


if __name__ == "__main__":
  main()
