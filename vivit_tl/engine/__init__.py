"""Training and evaluation: the accelerate trainer, multi-view evaluation, loaders, optimisers, metric logs."""
