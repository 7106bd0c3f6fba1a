"""Training: losses, optimiser and schedule, the trainer, distributed runs."""
