"""Two-host MPI check: every rank all-reduces rank+1 over mpi4py and writes what it saw."""

import json
import os
from pathlib import Path

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank, world = comm.Get_rank(), comm.Get_size()
total = comm.allreduce(rank + 1)
report = {"rank": rank, "world": world, "sum": total, "host": MPI.Get_processor_name()}
print("mpi_allreduce:", json.dumps(report), flush=True)
Path(os.environ["SM_MODEL_DIR"], f"rank{rank}.json").write_text(json.dumps(report))
