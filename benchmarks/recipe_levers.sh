#!/usr/bin/env bash
# The time-to-quality levers of docs/results.md: each variant of the translation recipe trained for the same
# number of steps (STEPS, about what a 10-minute budget holds at 2 threads with 4,096-token batches), one
# thread each so two can share the 2 cores without disturbing each other's numerics, then test BLEU / chrF
# with beam 4 on John. Every variant is the "small" preset (3+3 layers) unless it names the layers (N1 = the
# "shallow" preset). The wall-clock claims come from `aiayn train --time-budget`, not from these runs.
#
#   bash benchmarks/recipe_levers.sh            # every variant, two at a time (hours on 2 cores)
#   VARIANTS="E1 E5" bash benchmarks/recipe_levers.sh
#   VARIANTS="L1 L2 L3 L4 L5" bash benchmarks/recipe_levers.sh   # the second round
#   VARIANTS="M1 M2 M3" bash benchmarks/recipe_levers.sh         # the third round
#   VARIANTS="N1 N2" bash benchmarks/recipe_levers.sh            # the fourth round (depth)
set -euo pipefail
cd "$(dirname "$0")/.."
AIAYN=${AIAYN:-.venv/bin/aiayn}
OUT=${OUT:-runs/levers}
STEPS=${STEPS:-800}
declare -A FLAGS=(
  [E1]="--norm pre --batch-tokens 4096 --warmup 300 --peak-lr 2e-3 --schedule linear"
  [E2]="--norm pre --batch-tokens 4096 --warmup 300 --peak-lr 2e-3 --schedule inverse-sqrt"
  [E3]="--norm pre --batch-tokens 4096 --warmup 300 --peak-lr 2e-3 --schedule linear --vocab-size 4000"
  [E4]="--norm pre --batch-tokens 4096 --warmup 150 --peak-lr 3e-3 --schedule linear"
  [E5]="--norm pre --batch-tokens 4096 --warmup 150 --peak-lr 3e-3 --schedule linear --dropout 0"
  # the second round (docs/results.md): 1.53M target tokens each; a later --steps wins over STEPS
  [L1]="--batch-tokens 2048 --warmup 300"
  [L2]="--batch-tokens 2048 --warmup 500"
  [L3]="--batch-tokens 1024 --warmup 1000 --steps 1600"
  [L4]="--batch-tokens 2048 --warmup 500 --encoder-layers 4 --decoder-layers 2 --steps 920"
  [L5]="--batch-tokens 512 --warmup 1500 --steps 2400"
  # the third round: L3 (the current default at 1.53M target tokens) with one change each
  [M1]="--batch-tokens 1024 --warmup 1000 --steps 1600 --peak-lr 3e-3"
  [M2]="--batch-tokens 1024 --warmup 1000 --steps 1600 --label-smoothing 0"
  [M3]="--batch-tokens 1024 --warmup 1230 --steps 2050 --encoder-layers 2 --decoder-layers 2"
  # the fourth round: the shallower stacks, at the time of L3's 1,600 steps (from the forward FLOPs per token)
  [N1]="--batch-tokens 1024 --warmup 1860 --steps 3100 --encoder-layers 1 --decoder-layers 1"
  [N2]="--batch-tokens 1024 --warmup 1320 --steps 2200 --encoder-layers 3 --decoder-layers 1"
  # S1, issue #21: L3 with scheduled sampling 0.25 (Mihaylova & Liu 2019; the option of commit a973e91, removed
  # after it measured worse: docs/why-attention.md)
)
VARIANTS=${VARIANTS:-"E1 E2 E3 E4 E5"}
mkdir -p "$OUT"
run() {  # run NAME: train one variant into $OUT/NAME, its log beside it
  rm -rf "${OUT:?}/$1"
  # shellcheck disable=SC2086
  OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 "$AIAYN" train --out "$OUT/$1" --steps "$STEPS" --threads 1 \
    --eval-every 200 --save-every 20 --keep-last 12 --log-every 50 --preset small ${FLAGS[$1]} >"$OUT/$1.log" 2>&1
  echo "$1 (${FLAGS[$1]}): $(grep -h 'test BLEU' "$OUT/$1.log" | tail -1)"
}
set -- $VARIANTS
while (($#)); do  # two at a time
  run "$1" & shift
  if (($#)); then run "$1" & shift; fi
  wait
done
