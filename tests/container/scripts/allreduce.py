"""Two-host gloo check: every rank all-reduces rank+1 and writes what it saw to the model dir."""

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
value = torch.tensor([float(rank + 1)])
dist.all_reduce(value)
report = {"rank": rank, "world": world, "sum": value.item(), "host": os.environ["SM_CURRENT_HOST"]}
print("allreduce:", json.dumps(report), flush=True)
Path(os.environ["SM_MODEL_DIR"], f"rank{rank}.json").write_text(json.dumps(report))
dist.destroy_process_group()
