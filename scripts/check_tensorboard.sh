#!/usr/bin/env bash
# Looks at tfprune's TensorBoard output the way a person does: in a real browser.
#
# Runs a short prune grid (two measures of the study's VGG-13 recipe on 100 images per class
# of the ../shared CIFAR-10 copy, 3 epochs, 2 rounds), starts `tensorboard --logdir` on
# localhost, opens its Images, Text and HParams dashboards in headless Chromium (Debian's
# `chromium`, its own --screenshot) and saves the screenshots into docs/images/, which
# docs/tensorboard.md shows. Not part of the unit tests (those read the tags back with
# TensorBoard's event reader); run it after changing what the callback logs.
#
# Usage: bash scripts/check_tensorboard.sh [LOGDIR]   (default: runs/tensorboard_check)
# Needs: chromium (apt-get install chromium). Takes about 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
logdir=${1:-runs/tensorboard_check}
port=${TENSORBOARD_PORT:-6123}
shots=docs/images
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "check_tensorboard: no chromium on PATH; install it (apt-get install chromium)." >&2
  exit 2
fi

study=configs/pruning/study
.venv/bin/tfprune grid "$study/vgg13_cifar10_proposed_r5.yaml" "$study/vgg13_cifar10_magnitude_r5.yaml" \
  --runs-dir "$logdir" --set train.epochs=3 --set prune.rounds=2 --set data.train_per_class=100 \
  --set data.test_per_class=20 --set prune.num_samples=256 --set train.verbose=2

.venv/bin/tensorboard --logdir "$logdir" --port "$port" --host 127.0.0.1 \
  > "$logdir/tensorboard.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 60); do
  curl -sf "http://127.0.0.1:$port/data/runs" > /dev/null && break
  sleep 1
done

mkdir -p "$shots"
shoot() {  # shoot NAME URL_FRAGMENT: one screenshot of a dashboard
  "$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1600,1400 --virtual-time-budget=30000 \
    --screenshot="$shots/tensorboard_$1.png" "http://127.0.0.1:$port/?darkMode=false#$2" \
    > /dev/null 2>&1
  echo "wrote $shots/tensorboard_$1.png"
}
shoot images "images&tagFilter=pruning%2F(kept_fraction%7Cmasks)"
shoot text "text&tagFilter=pruning%2Fsummary"
shoot hparams hparams

# The figures at full size, as TensorBoard stores them (read back with its own event reader).
.venv/bin/python - "$logdir" "$shots" <<'PY'
import glob
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

logdir, shots = sys.argv[1:]
folder = glob.glob(f"{logdir}/*proposed*/tensorboard/pruning")[0]
events = EventAccumulator(folder, size_guidance={"tensors": 0})
events.Reload()
for tag in ("pruning/kept_fraction", "pruning/masks", "pruning/scores"):
    image = events.Tensors(tag)[-1].tensor_proto.string_val[2]  # width, height, PNG
    path = f"{shots}/{tag.replace('/', '_')}.png"
    open(path, "wb").write(image)
    print(f"wrote {path}")
PY
