"""The laboratory: a toy world with ground truth, its oracle, the toy bench, baselines, ablations,
DreamBench, the speed bench and the tiny backbone. It uses the method; the method never uses it."""
