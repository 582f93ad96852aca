"""The convolution paths: their registry and dispatch, the autotune that picks one, Winograd in XLA, and
the C++ kernels (built at install) with their loader."""
