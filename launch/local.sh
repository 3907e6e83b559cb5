#!/usr/bin/env bash
# Rehearse a multi-host run on one machine: N processes of `bert-jax train` on CPU, joined through a
# coordinator on 127.0.0.1 with gloo collectives, each process with its own virtual devices.
#
# Usage:
#   launch/local.sh N CONFIG WORKDIR [--config.x=y ...]
# Settings (environment variables):
#   DEVICES_PER_PROCESS=4   virtual CPU devices in each process
#   PORT=12355              coordinator port
#   PYTHON=python3          the interpreter that has bert-jax installed
#   DRY_RUN=1               print the commands instead of running them
# Example (2 "hosts" x 4 devices, one mesh axis across the hosts):
#   launch/local.sh 2 configs/bert_tiny.py /tmp/rehearsal --config.mesh.dcn=2 --config.data.source=synthetic
# Process 0 prints the logs; process I>0 writes its output to WORKDIR/process_I.log.
set -euo pipefail

NUM="${1:?usage: launch/local.sh N CONFIG WORKDIR [--config.x=y ...]}"
CONFIG="${2:?usage: launch/local.sh N CONFIG WORKDIR [--config.x=y ...]}"
WORKDIR="${3:?usage: launch/local.sh N CONFIG WORKDIR [--config.x=y ...]}"
shift 3
DEVICES_PER_PROCESS="${DEVICES_PER_PROCESS:-4}"
PORT="${PORT:-12355}"
PYTHON="${PYTHON:-python3}"

if [[ -n "${DRY_RUN:-}" ]]; then
  for ((i = 0; i < NUM; i++)); do
    printf '%q ' "$PYTHON" -m bert_jax.cli train --config "$CONFIG" --workdir "$WORKDIR" \
      --coordinator "127.0.0.1:${PORT}" --num-processes "$NUM" --process-id "$i" "$@"
    echo
  done
  exit 0
fi

mkdir -p "$WORKDIR"
export JAX_PLATFORMS=cpu
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${DEVICES_PER_PROCESS}"

pids=()
stop_all() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop_all INT TERM

for ((i = 0; i < NUM; i++)); do
  command=("$PYTHON" -m bert_jax.cli train --config "$CONFIG" --workdir "$WORKDIR"
           --coordinator "127.0.0.1:${PORT}" --num-processes "$NUM" --process-id "$i" "$@")
  if ((i == 0)); then
    "${command[@]}" &
  else
    "${command[@]}" >"$WORKDIR/process_${i}.log" 2>&1 &
  fi
  pids+=("$!")
done

status=0
for pid in "${pids[@]}"; do
  if ! wait "$pid"; then
    status=1
    stop_all
  fi
done
exit "$status"
