"""Polygraphy-style comparison: runners give outputs, compare judges them, reference runs the model."""
