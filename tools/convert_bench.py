"""Time and peak memory of one conversion, measured in a fresh process.

    python -m tools.convert_bench RCAN_BIX2.pt        # prints JSON: seconds, file MB, peak extra RSS

Peak extra memory = the process's peak resident set after the conversion minus before it (file pages
of the memory-mapped source count too, so this is an upper bound on what the converter allocates).
"""
import json
import os
import sys
import tempfile
import time

from accel.platform.hardware import rss_bytes


def measure(src: str) -> dict:
    from weights_convert import write_canonical
    before = rss_bytes("VmHWM")
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        c = write_canonical(src, os.path.join(d, "out.safetensors"))
        seconds = time.perf_counter() - t
    peak = rss_bytes("VmHWM")
    size = os.path.getsize(src)
    return {"file": src, "file_mb": round(size / 1e6, 1), "seconds": round(seconds, 3),
            "values": int(sum(v.size for v in c.weights.values())),
            "peak_extra_mb": round((peak - before) / 1e6, 1), "peak_extra_over_file": round((peak - before) / size, 2)}


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])))
