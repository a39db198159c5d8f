"""Geometry in torch, always fp32: rigid frames, superposition and structure-comparison metrics."""
