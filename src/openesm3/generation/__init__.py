"""Prompting and iterative masked decoding on any track, and the protein tasks built on them."""
