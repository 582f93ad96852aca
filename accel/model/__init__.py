"""The RCAN network in flax.nnx and its parameters in the layouts accel runs."""
