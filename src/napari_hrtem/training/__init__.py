"""Training: simulated datasets (npz, zarr), label maps, the trainer (checkpoints, DDP), fine-tuning,
and the training jobs of the API, the command line and the Train widget (:mod:`~napari_hrtem.training.jobs`)."""
