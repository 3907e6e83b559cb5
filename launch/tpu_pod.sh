#!/usr/bin/env bash
# Train on a Cloud TPU VM pod slice (or several slices): create the TPU, install bert-jax on every
# worker, and start the same `bert-jax train` on all workers at once. JAX discovers the pod's
# workers itself (jax.distributed.initialize() with no arguments), so no coordinator flags are needed.
#
# Usage:
#   launch/tpu_pod.sh [--dry-run] create|install|train|delete
# Settings (environment variables):
#   TPU_NAME=bert-jax  ZONE=us-central2-b  ACCELERATOR=v4-32  RUNTIME=tpu-ubuntu2204-base
#   PROJECT=<gcloud project, optional>
#   CONFIG=configs/bert_large.py   WORKDIR=gs://BUCKET/bert-large   OVERRIDES="--config.mesh.fsdp=8"
#   SLICES=1  (multi-slice: N slices as one queued resource, the `dcn` mesh axis spans them)
#
# Example (BERT-large on a v4-32, FSDP within the slice):
#   ACCELERATOR=v4-32 CONFIG=configs/bert_large.py WORKDIR=gs://my-bucket/bl \
#     OVERRIDES="--config.mesh.fsdp=16 --config.mesh.data=-1" launch/tpu_pod.sh train
set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; shift; fi
ACTION="${1:-}"

TPU_NAME="${TPU_NAME:-bert-jax}"
ZONE="${ZONE:-us-central2-b}"
ACCELERATOR="${ACCELERATOR:-v4-32}"
RUNTIME="${RUNTIME:-tpu-ubuntu2204-base}"
CONFIG="${CONFIG:-configs/bert_base.py}"
WORKDIR="${WORKDIR:-}"
OVERRIDES="${OVERRIDES:-}"
SLICES="${SLICES:-1}"
PROJECT_FLAG=()
if [[ -n "${PROJECT:-}" ]]; then PROJECT_FLAG=(--project "$PROJECT"); fi

run() {
  if (( DRY_RUN )); then printf '%q ' "$@"; echo; else "$@"; fi
}

on_all_workers() {
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" --worker=all --command "$1"
}

case "$ACTION" in
  create)
    if (( SLICES > 1 )); then
      run gcloud compute tpus queued-resources create "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" \
        --accelerator-type "$ACCELERATOR" --runtime-version "$RUNTIME" \
        --node-count "$SLICES" --node-prefix "$TPU_NAME"
    else
      run gcloud compute tpus tpu-vm create "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" \
        --accelerator-type "$ACCELERATOR" --version "$RUNTIME"
    fi
    ;;
  install)
    # Copies this checkout (committed files only) to every worker, then installs it with TPU JAX.
    ARCHIVE="$(mktemp -d)/bert-jax.tar.gz"
    run git -C "$(dirname "$0")/.." archive --format=tar.gz --prefix=bert-jax/ -o "$ARCHIVE" HEAD
    run gcloud compute tpus tpu-vm scp "$ARCHIVE" "$TPU_NAME:~/" --zone "$ZONE" "${PROJECT_FLAG[@]}" --worker=all
    on_all_workers "set -e; rm -rf ~/bert-jax; tar xzf ~/bert-jax.tar.gz -C ~; python3 -m venv ~/bert-jax-env; \
~/bert-jax-env/bin/pip install -q --upgrade pip; cd ~/bert-jax && ~/bert-jax-env/bin/pip install -q -e '.[tpu,gcs]'"
    ;;
  train)
    if [[ -z "$WORKDIR" ]]; then
      echo "launch/tpu_pod.sh: set WORKDIR to a bucket path (gs://BUCKET/run): every worker must see it" >&2
      exit 2
    fi
    DCN_FLAG=""
    if (( SLICES > 1 )); then DCN_FLAG="--config.mesh.dcn=$SLICES"; fi
    on_all_workers "cd ~/bert-jax && . ~/bert-jax-env/bin/activate && \
bert-jax train --config $CONFIG --workdir $WORKDIR $DCN_FLAG $OVERRIDES 2>&1 | tee -a ~/train.log"
    ;;
  delete)
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" --quiet
    ;;
  *)
    echo "usage: launch/tpu_pod.sh [--dry-run] create|install|train|delete (settings: see the top of this file)" >&2
    exit 2
    ;;
esac
