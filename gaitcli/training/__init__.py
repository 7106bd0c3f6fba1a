"""Training: losses, optimiser and schedule, the run builders, the run folder, the trainer."""
