"""A model's life after it is built: safe checkpoints, versioned models (the model registry),
rebuilding from build info, and export."""
