"""GPU check before the GPU benchmark: accel (full float32, TF32, bfloat16) and torch CUDA against the
NumPy reference on the full official ×2 architecture (random weights, 48×40 input) and on a padded batch.
Prints the largest absolute difference of each (outputs are in [0, 255])."""
import jax
import numpy as np
import torch

import accel
import reference
from accel.conv import autotune
from reference import RCANConfig, init_weights
from tools import torch_rcan

dev = "cuda" if torch.cuda.is_available() else "cpu"
print("jax", jax.__version__, jax.devices(), "| torch", torch.__version__, dev)
config = RCANConfig.official(2)
weights = init_weights(config, 0)
lr = np.random.default_rng(0).uniform(0, 255, (48, 40, 3)).astype(np.float32)
ref = reference.forward(weights, config, lr)
for precision in ("highest", "tensorfloat32", "bfloat16"):
    with jax.default_matmul_precision("highest" if precision == "bfloat16" else precision):
        m = accel.model_from_weights(weights, config, dtype=jax.numpy.bfloat16 if precision == "bfloat16"
                                     else jax.numpy.float32, conv=autotune.env_setting())
        out = np.asarray(accel.forward(m, lr[None]))[0]
        # A padded batch: the image in the corner of a larger canvas, with its mask, next to another.
        canvas = np.zeros((2, 64, 64, 3), np.float32)
        mask = np.zeros((2, 64, 64, 1), np.float32)
        canvas[0, :48, :40], mask[0, :48, :40] = lr, 1
        canvas[1], mask[1] = 128, 1
        padded = np.asarray(accel.forward(m, canvas, mask))[0, :96, :80]
    print(f"accel {precision:<14} max|accel - reference| = {np.abs(out - ref).max():.2e}   "
          f"padded batch: {np.abs(padded - ref).max():.2e}")
for tf32 in (False, True):
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    net = torch_rcan.from_weights(weights, config).to(dev)
    with torch.inference_mode():
        y = net(torch.from_numpy(lr).permute(2, 0, 1)[None].to(dev))[0].permute(1, 2, 0).cpu().numpy()
    print(f"torch {dev} {'tf32' if tf32 else 'float32'}   max|torch - reference| = {np.abs(y - ref).max():.2e}")
