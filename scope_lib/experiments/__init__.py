"""The run registry and the experiment grid above the trainer: a trained run is found again by its key, never retrained."""
