#!/usr/bin/env bash
# The study of docs/study.md: VGG-13 x0.25 on all of CIFAR-10 (the copy in ../shared), 20 epochs,
# 75% of filters in 5 rounds, 8 measures and the base model, seeds 0, 1, 2, into runs/study.
#
# Order: seed by seed (default 2, 0, 1: seed 2 was under way when the first machine's run
# folders of seeds 0 and 1 were lost), every config of a seed before the next, so paired
# comparisons become possible as early as possible. Seed 0's base run records the
# training-dynamics analyses (Section 4.1, Fig. 3) and doubles as seed 0's base model. After
# each run the tables and claims are rewritten into docs/study/ from the records of finished
# runs (below), by the working tree's `tfprune report`. Niced; resumable: run it again after an interruption, finished runs are
# skipped and the interrupted one resumes from its last finished epoch.
#
# The study runs a fixed version of the code, not the working tree (which may be mid-edit while
# the study runs for hours): the commit in runs/study/code_commit (default: the one below, which
# ran the first runs), extracted into runs/study/code and put first on PYTHONPATH.
#
# Usage: bash scripts/run_study.sh [SEED...]   (default: 2 0 1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
mkdir -p runs/study
[ -f runs/study/code_commit ] || echo 81b30aed7137d443cf9b51ff066313ccb879d7b0 > runs/study/code_commit
if [ ! -d runs/study/code ]; then
  mkdir -p runs/study/code
  git archive "$(cat runs/study/code_commit)" tfprune | tar -x -C runs/study/code
fi
export PYTHONPATH="$PWD/runs/study/code${PYTHONPATH:+:$PYTHONPATH}"
tfprune=(nice -n 19 .venv/bin/tfprune)
study=configs/pruning/study
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(2 0 1)  # seed 2 first: it was under way when seeds 0, 1 were lost

# A finished run's record (the little the tables need: accuracies, seed, measure, FLOPs, ...)
# is merged into docs/study/records.json, which is committed: the tables are written from it,
# so they survive the loss of runs/ (a new machine). Run folders (checkpoints, TensorBoard
# logs) stay in runs/, out of git. The working tree's report code writes it (it trains nothing).
records=docs/study/records.json
record_runs() {
  env -u PYTHONPATH "${tfprune[@]}" report "$records" runs/study --save-records "$records" \
    --output docs/study > /dev/null
}
# A run in the records whose folder is gone (a new machine) is finished: not trained again.
recorded() {
  [ ! -d "runs/study/$1" ] && grep -q "\"run_dir\": \"runs/study/$1\"" "$records"
}

configs=("$study/vgg13_cifar10_base.yaml" "$study"/vgg13_cifar10_*_r5.yaml)
for seed in "${seeds[@]}"; do
  if [ "$seed" = 0 ]; then
    # Seed 0's base run records the training-dynamics analyses (Section 4.1, Fig. 3).
    analysis=runs/study/study_vgg13_cifar10_base-s0
    if [ ! -f "$analysis/summary.json" ] && ! recorded "$(basename "$analysis")"; then
      if [ -d "$analysis" ]; then args=(--resume "$analysis"); else
        args=("$study/vgg13_cifar10_base.yaml" --set "run.dir=$analysis" --set train.seed=0); fi
      "${tfprune[@]}" analyze training "${args[@]}" --num-samples 2560 \
        --hessian-epochs 0 1 5 10 20
    fi
    if [ -d "$analysis/analysis" ]; then  # not when the run came back from the archive
      mkdir -p docs/study/analysis
      cp "$analysis"/analysis/{dynamics.csv,*.png} docs/study/analysis/
    fi
  fi
  for config in "${configs[@]}"; do
    name="study_$(basename "$config" .yaml)-s$seed"
    if recorded "$name"; then echo "$name: finished (in $records), skipped"; continue; fi
    "${tfprune[@]}" grid "$config" --first-seed "$seed" --seeds 1 --runs-dir runs/study \
      --set train.verbose=2 || true
    record_runs
  done
  if [ "$seed" = 0 ]; then
    "${tfprune[@]}" analyze runs runs/study/study_vgg13_cifar10_*_r5-s0 --output docs/study/r5_s0
  fi
done
