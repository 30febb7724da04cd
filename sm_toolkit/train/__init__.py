"""The training loop shared by every model family, with checkpoints, metrics, plots and
debugger-rule diagnostics. Runs inside the container; never imports the SageMaker SDK."""
