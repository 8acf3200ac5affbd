"""Training runtime: config, data, the loop, checkpoints and run records."""
