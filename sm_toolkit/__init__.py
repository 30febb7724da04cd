"""sm-toolkit: one YAML job spec for SageMaker PyTorch training."""
__version__ = "0.1.0"
