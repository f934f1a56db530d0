"""Training and evaluation for visionatlas tasks, on PyTorch Lightning."""
