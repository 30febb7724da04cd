"""Laptop side: spec -> SageMaker SDK objects, the exact API request, and launch."""
