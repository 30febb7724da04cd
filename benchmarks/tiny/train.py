"""The tiny user script of benchmarks/local_start_times.py: its first line is the mark."""

import time

print(f"tiny-script: first line at {time.time():.3f}", flush=True)
