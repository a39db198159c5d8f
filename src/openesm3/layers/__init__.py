"""Neural network building blocks shared by the trunk, the structure VQ-VAE and the function decoder."""
