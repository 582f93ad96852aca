"""The CPU convolution kernels: C++ sources (XLA FFI custom calls), built into lib/ at install (build.py)
and loaded by accel/conv/cpu_kernel.py."""
