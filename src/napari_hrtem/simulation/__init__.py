"""Simulation: MoS2 samples with ground truth (ASE), abTEM exit waves and HRTEM focal series.

Modules: :mod:`~napari_hrtem.simulation.structures` (samples and their true sites),
:mod:`~napari_hrtem.simulation.parameters` (thesis Table 1 ranges),
:mod:`~napari_hrtem.simulation.vibrations` (Debye and coordination-dependent vibrations),
:mod:`~napari_hrtem.simulation.imaging` (exit waves, microscope and detector) and
:mod:`~napari_hrtem.simulation.synthesis` (batched torch focal series for training).
"""
