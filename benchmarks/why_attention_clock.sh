#!/usr/bin/env bash
# The Transformer against the recurrent baseline at equal wall-clock (docs/why-attention.md): both trained
# side by side for the same time budget, one thread each, so the two share the 2 cores and whatever else
# runs on the machine alike. Each keeps its dev evaluations along the way (the curves) and is scored on the
# test books at the end (beam 4); then one picture of BLEU against minutes for every run in $OUT.
#
#   bash benchmarks/why_attention_clock.sh 10m      # runs/why-attention/{transformer,rnn}-10m
#   bash benchmarks/why_attention_clock.sh 20m      # (or 30m)
#   PLOT_ONLY=1 bash benchmarks/why_attention_clock.sh   # redraw docs/why-attention-bleu-vs-clock.png
#
# Both are the "small" preset, sized to the same parameter count. The RNN trains as the GNMT / OpenNMT LSTM
# baselines do, with the gradient norm clipped at 5; everything else is the default recipe (its learning rate
# was tuned for the Transformer, docs/results.md).
set -euo pipefail
cd "$(dirname "$0")/.."
AIAYN=${AIAYN:-.venv/bin/aiayn}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/why-attention}
mkdir -p "$OUT"
if [[ -z "${PLOT_ONLY:-}" ]]; then
  budget=${1:?usage: why_attention_clock.sh BUDGET (e.g. 10m)}
  train() {  # train NAME FLAGS...: one run at one thread into $OUT/NAME-$budget
    local name=$1; shift
    rm -rf "${OUT:?}/$name-$budget"
    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 "$AIAYN" train --out "$OUT/$name-$budget" --threads 1 \
      --time-budget "$budget" "$@" >"$OUT/$name-$budget.log" 2>&1
    echo "$name, $budget: $(grep -h 'test BLEU' "$OUT/$name-$budget.log" | tail -1)"
  }
  train transformer --preset small &   # 3+3 layers, 7.58M parameters
  train rnn --preset small --arch rnn --clip-norm 5 &   # 2+2 LSTM layers, 7.56M parameters
  wait
fi
runs=()
for budget in 10m 20m 30m; do
  for name in transformer rnn; do
    label=Transformer; [[ $name == rnn ]] && label="LSTM (RNN)"
    if [[ -f "$OUT/$name-$budget/metrics.jsonl" ]]; then runs+=("$OUT/$name-$budget:$label, $budget"); fi
  done
done
"$PYTHON" benchmarks/bleu_vs_clock.py "${runs[@]}" --out docs/why-attention-bleu-vs-clock.png --no-eole \
  --title "Transformer vs LSTM, equal wall-clock, 1 thread each side by side (bundled Bible, test = John)"
