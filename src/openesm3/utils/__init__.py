"""Small helpers shared by every layer: atomic file output and progress reporting."""
