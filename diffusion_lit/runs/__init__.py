"""Running jobs: training and evaluation runs, sweeps (job records, end-of-sweep summary and
report), and experiment tracking. Entry points call into this layer."""
