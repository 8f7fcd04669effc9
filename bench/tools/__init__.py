"Helpers shared by the benchmark scripts (not a benchmark: `progressive-ir bench` runs `bench/*.py` only)."
