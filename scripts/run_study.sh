#!/usr/bin/env bash
# The reduced-scale study (docs/study.md): every config of configs/pruning/study for seed 0,
# then seed 1, into runs/study; then the tables into docs/study/. Resumable: run it again
# after an interruption and finished runs are skipped, the interrupted one resumed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
configs=()
for model in vgg13 resnet20; do
  configs+=(configs/pruning/study/${model}_cifar10_base.yaml)
  for rounds in 1 5; do
    configs+=($(ls configs/pruning/study/${model}_cifar10_*_r${rounds}.yaml))
  done
done
for seed in 0 1; do
  .venv/bin/tfprune grid "${configs[@]}" --first-seed "$seed" --seeds 1 --runs-dir runs/study \
    --set train.verbose=0 || true
done
.venv/bin/tfprune report runs/study --output docs/study
.venv/bin/tfprune analyze runs runs/study/study_vgg13_cifar10_*_r5-s0 --output docs/study/vgg13_r5
