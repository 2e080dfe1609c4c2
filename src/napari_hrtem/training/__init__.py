"""Training: simulated datasets (npz, zarr), label maps, the trainer (checkpoints, DDP) and fine-tuning."""
