"""Export: trained encoder + head to a model bundle (ONNX) for the edge runtime."""
