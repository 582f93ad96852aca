"""The command-line options the CLIs share, each defined once: a flag reaches the model the same way from
rcan-upscale, rcan-evaluate, rcan-train, rcan-report and rcan-bench."""
from __future__ import annotations

import argparse

import jax.numpy as jnp

from reference.config import SCALES

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# (The model stack is imported where an option needs it: rcan-bench's parent process only spawns cases.)


def scale(ap: argparse.ArgumentParser, *, required: bool = False, default: int | None = None,
          help: str = "upscaling factor") -> None:
    ap.add_argument("--scale", type=int, choices=SCALES, required=required, default=default, help=help)


def weights(ap: argparse.ArgumentParser, *, model_help: str, weights_help: str) -> None:
    """--model (a shipped model, or auto) and --weights (a file instead)."""
    from .api import SHIPPED
    ap.add_argument("--model", choices=["auto", *SHIPPED], default="auto", help=model_help)
    ap.add_argument("--weights", help=weights_help)


def dtype(ap: argparse.ArgumentParser, *, auto: bool, help: str) -> None:
    """--dtype: float32 or bfloat16, and auto (accel/run/precision.py) where the command offers it."""
    from .run import precision
    choices = precision.CHOICES if auto else tuple(DTYPES)
    ap.add_argument("--dtype", choices=choices, default="auto" if auto else "float32", help=help)


def conv(ap: argparse.ArgumentParser) -> None:
    from .conv import autotune
    ap.add_argument("--conv", choices=autotune.SETTINGS, default=autotune.env_setting(),
                    help="convolution path (default: $RCAN_CONV or auto: timed once per size class; on a GPU of "
                         "near-equal paths the one with less device memory; the paths: accel/conv/registry.py)")


def json_output(ap: argparse.ArgumentParser, help: str = "print JSON instead of the table") -> None:
    ap.add_argument("--json", action="store_true", help=help)


def quiet(ap: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    ap.add_argument("--quiet", action="store_true", help=help)
