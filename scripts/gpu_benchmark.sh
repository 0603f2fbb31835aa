#!/usr/bin/env bash
# The training benchmark's gpu-resnet18 preset on one GPU, in phases, so that it can be driven
# from a machine that is lent for short calls (the device tool) as well as run by hand.
#
#   WORK=/root/work DATA_ROOT=/root/data bash scripts/gpu_benchmark.sh PHASE [ARGS]
#
# Phases:
#   throughput            images/s and peak GPU memory of each encoder preset at the preset's
#                         64 px (WORK/throughput.json), then the pretraining budget: draws per
#                         run = BUDGET_S x the resnet18 images/s (WORK/overrides.txt)
#   start NAME METHODS SEEDS
#                         in the background (its own session), one benchmark process per seed in
#                         turn for METHODS on DATASETS (default msl-v2.1; ai4mars needs the
#                         pack's ai4mars-val part) at 10% labels; log WORK/logs/NAME.log
#   wait SECONDS          until no started lane is running, or SECONDS have passed
#   summary METHODS SEEDS benchmark.json / .md from the finished runs (WORK/results)
#
# The preset's settings that are changed (--override) are named in the results: the AI4Mars
# share of the pool is the frames that scripts/pack_device_data.py copied. Lanes share the GPU;
# at 64 px one ResNet-18 pretraining holds about 10 GiB, and six at once ran out of memory on
# an 80 GiB H100 (docs/results/gpu-resnet18/README.md).
set -euo pipefail
WORK=${WORK:-runs/gpu}
DATA_ROOT=${DATA_ROOT:-../shared/data}
BUDGET_S=${BUDGET_S:-120}   # seconds of one whole GPU per pretraining
AI4MARS_FRAMES=${AI4MARS_FRAMES:-500}  # as packed by scripts/pack_device_data.py
EPOCHS=${EPOCHS:-12}
EDGE=${EDGE:-edge}
PRESET=${PRESET:-gpu-resnet18}
DATASETS=${DATASETS:-msl-v2.1}
mkdir -p "$WORK/logs"

overrides() {
  local args=()
  for item in $(cat "$WORK/overrides.txt"); do args+=(--override "$item"); done
  echo "${args[@]}"
}

case ${1:-} in
  throughput)
    $EDGE train throughput --preset tiny,small,resnet18 --device cuda --tile-pixels 64 \
      --batch-size 512 --steps 20 --warmup 3 --json "$WORK/throughput.json"
    python3 - "$WORK" "$BUDGET_S" "$AI4MARS_FRAMES" "$EPOCHS" <<'EOF'
import json, sys
work, budget, frames, epochs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rate = {r["preset"]: r["images_per_s_median"] for r in json.load(open(f"{work}/throughput.json"))["results"]}["resnet18"]
per_epoch = int(min(131072, max(16384, budget * rate / epochs // 512 * 512)))
items = [f"ai4mars_train_frames={frames}", f"epochs={epochs}", f"epoch_size={per_epoch}",
         "cluster_warmup=2", "cluster_every=2"]
open(f"{work}/overrides.txt", "w").write("\n".join(items) + "\n")
print("overrides:", " ".join(items), f"(resnet18 at {rate:.0f} images/s)")
EOF
    ;;
  start)
    name=$2 methods=$3 seeds=$4
    # shellcheck disable=SC2046
    setsid nohup bash -c "for s in ${seeds//,/ }; do $EDGE train benchmark --preset $PRESET \
      $(overrides) --datasets $DATASETS --methods $methods --fractions 0.1 --seeds \$s \
      --work-dir $WORK/bench --out $WORK/lane-$name-\$s --data-root $DATA_ROOT --threads 4 \
      || echo FAILED seed \$s; done; echo LANE DONE" >"$WORK/logs/$name.log" 2>&1 &
    echo "$!" >"$WORK/logs/$name.pid"
    ;;
  wait)
    end=$((SECONDS + $2))
    while ((SECONDS < end)); do
      running=0
      for f in "$WORK"/logs/*.log; do grep -q "LANE DONE" "$f" || running=1; done
      ((running)) || break
      sleep 10
    done
    for f in "$WORK"/logs/*.log; do
      echo "== $f"; grep -v '^{' "$f" | tail -6; (grep '^{' "$f" || true) | tail -2 | cut -c1-400
    done
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
    ;;
  summary)
    # shellcheck disable=SC2046
    $EDGE train benchmark --preset $PRESET $(overrides) --datasets "$DATASETS" \
      --methods "$2" --fractions 0.1 --seeds "$3" \
      --work-dir "$WORK/bench" --out "$WORK/results" --data-root "$DATA_ROOT" --threads 4
    ;;
  *)
    sed -n 2,20p "$0"
    exit 1
    ;;
esac
