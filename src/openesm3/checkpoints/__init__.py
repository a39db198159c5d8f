"""Weights: the official release files (explicit key maps) and our safetensors format."""
