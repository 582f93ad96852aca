"""Experiment for the README's app section: upload to result for a 600×400 photo in rcan-app (gradio_client,
the app warm after its first request) against `accel.upscale` on the same photos (a fresh process each, the
persistent cache warm), same model (auto: deep for a PNG).

Run, from the repository root (the `[app]` and test extras installed): python runs/experiments/app_vs_cli.py
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from gradio_client import Client, handle_file
from PIL import Image


def main() -> None:
    work = tempfile.mkdtemp(prefix="app-vs-cli-")
    src = Image.open("tests/data/Set5/HR_x2/baby_HR_x2.png").resize((900, 900))
    paths = []
    for i in range(3):
        paths.append(os.path.join(work, f"photo600x400_{i}.png"))
        src.crop((i * 20, i * 20, 600 + i * 20, 400 + i * 20)).save(paths[-1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RCAN_JAX_CACHE=os.path.join(work, "cache"))
    app = subprocess.Popen([sys.executable, "-m", "accel.app", "--port", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for p in paths:
            t = time.perf_counter()
            table = client.predict([handle_file(p)], "auto", False, 0.5, 2, "png", False, api_name="/upscale")[0]
            print(f"app {os.path.basename(p)}: {time.perf_counter() - t:.2f} s ({table['data'][0][3]})", flush=True)
    finally:
        app.terminate()
        app.wait()
    for p in paths:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "accel.upscale", p, "-o", os.path.join(work, "cli.png"), "--force",
                        "--quiet"], env=env, check=True)
        print(f"cli {os.path.basename(p)}: {time.perf_counter() - t:.2f} s", flush=True)


if __name__ == "__main__":
    main()
