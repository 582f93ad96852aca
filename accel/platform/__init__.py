"""What accel needs from the machine: the runtime settings (compilation cache, memory), the hardware
(CPU flags, peaks, memory readings) and the multi-process setup."""
