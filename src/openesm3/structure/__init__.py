"""Protein structures in numpy + biotite (no torch): reading, writing, DSSP, SASA."""
