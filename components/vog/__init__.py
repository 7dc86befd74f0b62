"""Variance of Gradients: scoring core, checkpoint contract and the TFX component."""
