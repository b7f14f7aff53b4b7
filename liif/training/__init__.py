"""task=train: the Trainer (the original recipe, exact resume), one training step, the learning-rate schedule."""
