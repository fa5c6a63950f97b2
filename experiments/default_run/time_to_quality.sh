#!/usr/bin/env bash
# Time to quality of the default run: each recipe is `make train` with a few overrides, trained to
# a fixed budget and scored by its own final evaluation (256 samples, results.json). One after
# another (each run uses every core); table: python experiments/default_run/time_to_quality.py RUNS
#   experiments/default_run/time_to_quality.sh RUNS name "overrides" [name "overrides" ...]
set -euo pipefail
runs=${1:?usage: time_to_quality.sh RUNS name "overrides" ...}
shift
python=${PYTHON:-python}
while (($# >= 2)); do
    name=$1 overrides=$2
    shift 2
    if [[ -f $runs/$name/results.json ]]; then
        echo "skip $name (done)"
        continue
    fi
    echo "$(date -u +%H:%M:%S) $name: $overrides"
    # shellcheck disable=SC2086
    $python -m diffusion_lit.train $overrides callbacks.progress_bar=null \
        hydra.run.dir="$runs/$name" >"$runs/$name.log" 2>&1 || echo "$name failed (see $runs/$name.log)"
done
