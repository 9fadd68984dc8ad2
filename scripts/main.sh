#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install, then build a narrow VGG-13, prune it early
# in training with a gradient-flow measure, train on, slim it, export it to TFLite (float and
# int8), verify the files in LiteRT and print accuracy, params, FLOPs, file sizes and latency.
# Data: tensorflow-datasets' cifar10 by default; when the repository's sibling ../shared/datasets
# holds the offline CIFAR-10 copy (or TFPRUNE_DATA names a source), that is used instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh
data=${TFPRUNE_DATA:-}
if [ -z "$data" ] && [ -f ../shared/datasets/cifar10-jpeg.zip ]; then
  data=../shared/datasets/cifar10-jpeg.zip
fi
run_dir="runs/main-$(date +%Y%m%d-%H%M%S)"
args=(configs/main.yaml --set "run.dir=$run_dir")
[ -n "$data" ] && args+=(--set "data.source=$data")
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
.venv/bin/tfprune pipeline "${args[@]}" "$@"
