"""Training core: labeled samples, the training loop and its bundle output."""
