import pytest
import torch

from sm_toolkit.errors import ConfigError
from sm_toolkit.runtime.distributed import DistInfo, choose_backend, detect, reduce_mean_on


def test_single_process_without_launcher_variables():
    info = detect({})
    assert info == DistInfo() and not info.enabled and info.is_main


def test_torchrun_variables():
    info = detect({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.launcher) == (1, 2, 1, "torchrun")
    assert info.enabled and not info.is_main


def test_open_mpi_variables():
    env = {
        "OMPI_COMM_WORLD_RANK": "3",
        "OMPI_COMM_WORLD_SIZE": "4",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    }
    info = detect(env)
    assert (info.rank, info.world_size, info.local_rank, info.launcher) == (3, 4, 1, "mpi")


def test_inconsistent_rank_is_rejected():
    with pytest.raises(ConfigError):
        DistInfo(rank=2, world_size=2)


def test_cpu_backend_is_gloo_and_reduce_is_identity_alone():
    assert choose_backend(torch.device("cpu")) == "gloo"
    assert reduce_mean_on(torch.tensor([1.5, 2.0]), DistInfo()).tolist() == [1.5, 2.0]
