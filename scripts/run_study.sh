#!/usr/bin/env bash
# The reduced-scale study (docs/study.md): the training-dynamics analyses of both base networks,
# then every config of configs/pruning/study for seed 0, then seed 1, into runs/study; then the
# tables and layer-wise figures into docs/study/. Resumable: run it again after an interruption;
# finished runs are skipped and the interrupted one resumed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
for model in vgg13 resnet20; do
  run=runs/study_analysis/$model
  if [ ! -f "$run/summary.json" ]; then
    if [ -d "$run" ]; then resume=(--resume "$run"); else
      resume=(configs/pruning/study/${model}_cifar10_base.yaml --set "run.dir=$run"); fi
    .venv/bin/tfprune analyze training "${resume[@]}"
  fi
  mkdir -p docs/study/analysis_$model
  cp "$run"/analysis/{dynamics.csv,*.png} docs/study/analysis_$model/
done
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
for model in vgg13 resnet20; do
  .venv/bin/tfprune analyze runs runs/study/study_${model}_cifar10_*_r5-s0 \
    --output docs/study/${model}_r5
done
