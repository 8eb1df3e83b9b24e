"""Inference with the exported ONNX model: contract, engine, sliding windows, ensembles (no torch)."""
