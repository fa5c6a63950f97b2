#!/usr/bin/env bash
# The GPU code paths, once, on a machine with a CUDA GPU: a debug=smoke training run (tiny net,
# a few steps, sample grids, checkpoint, final evaluation) on trainer=gpu and on trainer=ddp, each
# at 16-mixed and bf16-mixed, then peers.py with everything on the GPU.
#   experiments/benchmarks/gpu_smoke.sh [LOG_DIR]       # logs and peers_gpu.json into LOG_DIR
# PEERS=0 leaves peers.py out (its timings need the GPU to itself).
# Each run is independent: one that fails is reported and the rest still run; the exit status
# counts the failures.
set -uo pipefail
PY=${PYTHON:-python3}
LOGS=${1:-outputs/gpu_smoke}
mkdir -p "$LOGS"
failures=0
for trainer in gpu ddp; do
  for precision in 16-mixed bf16-mixed; do
    name=${trainer}_${precision}
    started=$SECONDS
    if timeout 300 "$PY" -m diffusion_lit.train debug=smoke trainer="$trainer" trainer.precision="$precision" \
      hydra.run.dir="$LOGS/$name" >"$LOGS/$name.log" 2>&1; then
      echo "ok     trainer=$trainer precision=$precision ($((SECONDS - started)) s)"
    else
      echo "FAILED trainer=$trainer precision=$precision (exit $?; log: $LOGS/$name.log)"; tail -15 "$LOGS/$name.log"
      failures=$((failures + 1))
    fi
  done
done
[[ ${PEERS:-1} == 0 ]] && exit "$failures"
"$PY" experiments/benchmarks/peers.py --device cuda --sizes 3M 10M --channels 1 3 --repeats 10 \
  --out "$LOGS/peers_gpu.json" 2>&1 | tee "$LOGS/peers.log" | grep -v '^ ' || failures=$((failures + 1))
exit "$failures"
