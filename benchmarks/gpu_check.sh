#!/usr/bin/env bash
# One prepared run on a machine with a CUDA GPU (the project's GPU checks, issue #8 item 5):
#   1. env        what the machine is: GPU, driver, torch, the packages aiayn needs
#   2. tests      tests/test_cuda.py: CUDA == CPU logits, fused attention, bf16, decoding, training, compile
#   3. bench-base benchmarks/train.py, paper-base at B=256 (16,384 target tokens): aiayn eager and compiled,
#                 nn.Transformer, HF Marian; MFU against the bf16 matmul peak measured in the same run
#   4. bench-modes paper-base aiayn only: compiled in torch.compile's default mode against "reduce-overhead"
#                 (CUDA graphs) and "max-autotune-no-cudagraphs", and eager at B=512 (issue #8's 45% MFU hunt)
#   4b. profile   benchmarks/profile_step.py: where aiayn's paper-base step spends device time (kernel kinds,
#                 the idle share), eager and compiled
#   5. train      `aiayn train` of the paper-base translator on the bundled Bible corpus, ~25k-token batches
#                 (§5.1), then test BLEU with beam 4
#   6. bench-small, 7. bench-big   the small and paper-big presets
# Each stage has a time limit and a share of one overall deadline (BUDGET seconds, default 780): a stage
# that fails or runs out of time leaves its log and the next stage still runs. Logs go to $OUT (or
# ./gpu-out). Run from the repository root, with no install: `bash benchmarks/gpu_check.sh`.
# STAGES="bench-base train" runs only those stages. DRY=1 runs every stage on the CPU with toy sizes, to
# check the script itself before a GPU is at hand.
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
DEADLINE=$(( $(date +%s) + ${BUDGET:-780} ))

if [ "${DRY:-0}" = 1 ]; then
  DEV=cpu; BASE_B=4; SMALL_B=4; BIG_B=2; ROUNDS=1; STEPS=6; TOKENS=600; WARM=3; EVAL=3; PRESET=tiny; THREADS=2
else
  DEV=cuda; BASE_B=256; SMALL_B=256; BIG_B=128; ROUNDS=5; STEPS=1500; TOKENS=25000; WARM=500; EVAL=500
  PRESET=paper-base; THREADS=4
fi
TRAIN_FLAGS=${TRAIN_FLAGS:-}  # more `aiayn train` flags, e.g. "--steps 300 --no-final-test"
export OUT PY DEV TRAIN_FLAGS BASE_B SMALL_B BIG_B ROUNDS STEPS TOKENS WARM EVAL PRESET THREADS

want() { [[ " ${STAGES:-env tests bench-base bench-modes profile train bench-small bench-big} " == *" $1 "* ]]; }

stage() {  # stage NAME LIMIT_SECONDS "COMMAND": run it under a time limit, log to $OUT/NAME.txt
  local name=$1 limit=$2 command=$3 left start rc
  want "$name" || return 0
  left=$(( DEADLINE - $(date +%s) - 5 ))
  if [ "$left" -lt 20 ]; then echo "== $name: skipped, ${left}s left of the budget"; return; fi
  [ "$left" -lt "$limit" ] && limit=$left
  echo "== $name (limit ${limit}s): $command"
  start=$(date +%s)
  timeout -s TERM -k 15 "$limit" bash -c "$command" > "$OUT/$name.txt" 2>&1
  rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - start ))s"
  grep -v -E "^W[0-9]{4} |it/s\]|s/it\]" "$OUT/$name.txt" | tail -n "${TAIL:-14}"
}

env_report() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true
  "$PY" - <<'EOF'
import importlib.metadata as md, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
for name in ("tokenizers", "sacrebleu", "safetensors", "tqdm", "matplotlib", "transformers", "pytest", "hypothesis"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "MISSING")
EOF
}

bench() {  # bench PRESET BATCH CONTENDERS
  "$PY" benchmarks/train.py --device "$DEV" --preset "$1" --batch "$2" --rounds "$ROUNDS" --contenders "$3"
}

translate_run() {
  rm -rf /tmp/aiayn-gpu-run
  "$PY" -m aiayn train --out /tmp/aiayn-gpu-run --device "$DEV" --preset "$PRESET" --batch-tokens "$TOKENS" \
    --steps "$STEPS" --warmup "$WARM" --peak-lr 7e-4 --log-every 100 --eval-every "$EVAL" --save-every 0 \
    --test-bleu-at "$EVAL,$(( 2 * EVAL ))" --threads "$THREADS" $TRAIN_FLAGS || return
  cp /tmp/aiayn-gpu-run/metrics.jsonl "$OUT/train-metrics.jsonl"
  echo "In the beginning God created the heaven and the earth." |
    "$PY" -m aiayn translate /tmp/aiayn-gpu-run/model --device "$DEV"
}

export -f env_report bench translate_run
stage env 60 env_report
stage tests 200 '"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py'
TAIL=8 stage bench-base 170 'bench paper-base "$BASE_B" "aiayn,aiayn compile,nn.Transformer,HF Marian"'
TAIL=8 stage bench-modes 200 'bench paper-base "$BASE_B" "aiayn compile,aiayn compile reduce-overhead,aiayn compile max-autotune-no-cudagraphs" && bench paper-base $(( 2 * BASE_B )) "aiayn,aiayn compile"'
TAIL=60 stage profile 150 'for c in aiayn "aiayn compile"; do "$PY" benchmarks/profile_step.py --device "$DEV" --preset paper-base --batch "$BASE_B" --contender "$c" --top 15; done'
TAIL=30 stage train 230 translate_run
TAIL=8 stage bench-small 90 'bench small "$SMALL_B" "aiayn,aiayn compile,nn.Transformer,HF Marian"'
TAIL=8 stage bench-big 120 'bench paper-big "$BIG_B" "aiayn,aiayn compile,nn.Transformer"'

ls -la "$OUT"
