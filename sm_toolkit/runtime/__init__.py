"""Code that runs inside the training container: /opt/ml + SM_* environment, failure file,
signals, distributed init. Never imports the SageMaker SDK."""
