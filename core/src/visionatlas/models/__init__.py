"""What models are made of: backbones, heads, composition, and inspection of built models."""
