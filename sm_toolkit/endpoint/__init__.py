"""A local SageMaker endpoint: SageMaker clients run their jobs on this machine.

``sm-toolkit serve`` answers SageMaker's training and tuning operations with the local
engine and every other service a training client calls (S3, STS, IAM, CloudWatch) with moto,
all on one port of 127.0.0.1.
"""
