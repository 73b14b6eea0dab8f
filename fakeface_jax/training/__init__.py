"""Training: the loop, its steps, checkpoints, preemption, the workdir lock and caches."""
