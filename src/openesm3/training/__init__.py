"""Training infrastructure (data, loop, checkpoints, distributed) and the methods that use it."""
