"""`thinct train`: the recipe, its data, losses and the training loop."""
