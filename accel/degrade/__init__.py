"""Degradations: the real-photo chains training draws from (in JAX), and the degraded test set made
with other tools."""
