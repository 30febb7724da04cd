"""Local runs: the same job on this machine, through the SageMaker container contract."""
