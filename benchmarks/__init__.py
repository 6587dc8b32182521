"""Benchmarks and experiments: kernel variants kept as measured records (variants/) and the probes
that time them on the GPU. Results go to reports/bench/; reports/bench/NOTES.md tells the story."""
