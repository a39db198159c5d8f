"""Tokenizers of every ESM3 track, with ids identical to the official vocabularies."""
