"""Training of UniPET and its baselines, reproducible from a config and its seed.

``config`` holds :class:`~model.training.config.TrainConfig` and its JSON and flags;
``trainer`` one run's state, steps and checkpoints (exact resume); ``run`` the whole run
(data, loop, DRF calibration, export); ``card`` the card skeleton written beside the weights.
``python -m model.train`` is the command line.
"""
