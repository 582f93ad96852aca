"""How an image is cut for the model: a Plan (whole, tiles fitted to the image, or fixed tiles shared by many
images), the shape each call is padded to, and the Canvas that blends the tiles' outputs without seams.

Channel attention pools over whatever the network sees. A tile therefore sees slightly different channel
statistics than the whole image, and its output differs slightly; tests/test_upscale.py measures how much
(PSNR between tiled and whole-image output >= 50 dB). Padding, by contrast, is exact: padded pixels are
masked out of every conv and every pooling.
"""
from __future__ import annotations

import dataclasses

import numpy as np

BUCKET = 16        # the finest step of the shape ladder (bucket)
OVERLAP = 16       # LR pixels two neighbouring tiles share by default (blended with linear ramps)
BATCH = 4          # tiles per call where the caller does not choose (the folder runner's fixed calls)
TILE_SIZES = (64, 96, 128, 192, 256, 384, 512, 768)   # the sides a single image's tile plan picks from
FOLDER_TILE = 128  # a folder's one tile side: the fastest of 128/192/256 (`python -m accel.bench --folder DIR`)
STEPS_PER_OCTAVE = 8


def bucket(n: int, multiple: int = BUCKET) -> int:
    """The length a side of n pixels is zero-padded to (masked, so exactly): the next step of a ladder of
    STEPS_PER_OCTAVE steps per doubling, multiples of `multiple` (…, 240, 256, 288, 320, …, 512, 576, …).
    Images of nearby sizes share one compiled shape: each new size compiled again (and timed the paths
    again), a few seconds for every image of a size not seen before; a step adds at most 1/8 of a side in
    padding (≈ 6 % on average at 300 pixels)."""
    step = max(multiple, 2 ** (max(n - 1, 1).bit_length() - 1) // STEPS_PER_OCTAVE)
    return round_up(n, step)


def round_up(n: int, multiple: int) -> int:
    """n up to a multiple (at least one multiple). Tiles of a large image are sized to it this finely:
    there the work of the padding would cost more than the compile it saves."""
    return max(multiple, -(-n // multiple) * multiple)


def fit_tile(length: int, tile: int, overlap: int) -> int:
    """The tile length (at most `tile`, a multiple of 8) that covers `length` with as few tiles as `tile`
    needs, spread evenly. Without it a length just over a multiple of the tile needs one more tile that
    mostly repeats its neighbour: 1024 pixels in tiles of 512 overlapping by 16 took three tiles of 512
    (1.5× the work on each axis, 2.25× on an image); fitted, three tiles of 352 (1.03×)."""
    if length <= tile:
        return length
    n = -(-(length - overlap) // (tile - overlap))
    return min(tile, round_up(-(-(length + (n - 1) * overlap) // n), 8))


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles of one axis begin: every tile − overlap pixels, the last one flush with the edge."""
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    return list(range(0, length - tile, step)) + [length - tile]


@dataclasses.dataclass(frozen=True)
class Plan:
    """How images are cut and batched for the model.

    tile None: each image whole, padded to the size ladder (bucket), one per call.
    fixed: tiles of exactly tile×tile for every image (smaller images and the last row and column padded,
    always masked), so images of any size share one compiled shape, and tiles of several images one call.
    Otherwise tiles fitted to the image (fit_tile), padded to multiples of 8.
    """
    tile: int | None = None
    overlap: int = OVERLAP
    batch: int = 1
    fixed: bool = False

    def tile_dims(self, shape) -> tuple[int, int]:
        """The (height, width) of the tiles that cover an image of this shape."""
        H, W = shape[:2]
        if self.tile is None:
            return H, W
        if self.fixed:
            return min(self.tile, H), min(self.tile, W)
        return fit_tile(H, self.tile, self.overlap), fit_tile(W, self.tile, self.overlap)

    def padded(self, shape) -> tuple[int, int]:
        """The (height, width) a call for an image of this shape runs at."""
        th, tw = self.tile_dims(shape)
        if self.fixed:
            return self.tile, self.tile
        if self.tile is None:
            return bucket(th), bucket(tw)
        return round_up(th, 8), round_up(tw, 8)

    def call_shape(self, shape) -> tuple[tuple[int, int, int, int], bool]:
        """The batch shape [N, H, W, 3] the model runs for an image of this shape, and whether masked."""
        H, W = self.padded(shape)
        masked = self.tile is not None or (H, W) != tuple(shape[:2])
        return (self.batch, H, W, 3), masked

    def starts(self, shape) -> tuple[list[int], list[int]]:
        """Where the rows and the columns of tiles of an image of this shape begin."""
        th, tw = self.tile_dims(shape)
        return starts(shape[0], th, self.overlap), starts(shape[1], tw, self.overlap)

    def tiles(self, shape) -> list[tuple[int, int]]:
        """The top-left corners of the tiles of an image of this shape."""
        ys, xs = self.starts(shape)
        return [(y, x) for y in ys for x in xs]


def _ramp(n: int, lead: int, trail: int) -> np.ndarray:
    """1 inside, rising over `lead` samples at the start and falling over `trail` at the end."""
    w = np.ones(n, np.float32)
    if lead:
        w[:lead] = (np.arange(lead) + 0.5) / lead
    if trail:
        w[n - trail:] = np.minimum(w[n - trail:], ((np.arange(trail) + 0.5) / trail)[::-1])
    return w


class Canvas:
    """One image's tiles as a plan cuts them (the last row and column flush with the edge), and its output
    being blended from the tiles' outputs with linear ramps where neighbours overlap (no seams)."""

    def __init__(self, img: np.ndarray, plan: Plan, scale: int):
        self.img, self.s = img, scale
        H, W = img.shape[:2]
        self.th, self.tw = plan.tile_dims(img.shape)
        self.shape = plan.padded(img.shape)    # of its calls
        self.ys, self.xs = plan.starts(img.shape)
        self.coords = plan.tiles(img.shape)
        self.acc = np.zeros((scale * H, scale * W, 3), np.float32)
        self.wsum = np.zeros((scale * H, scale * W, 1), np.float32)
        self.left = len(self.coords)
        self.seconds = 0.0                     # model time spent on its tiles

    def crop(self, y: int, x: int) -> np.ndarray:
        return self.img[y:y + self.th, x:x + self.tw]

    def add(self, y: int, x: int, sr: np.ndarray) -> None:
        s, th, tw, ys, xs = self.s, self.th, self.tw, self.ys, self.xs
        # Ramp only where a neighbour tile overlaps; the overlap may be larger for the last tile.
        lead_y = s * (ys[ys.index(y) - 1] + th - y) if y > 0 else 0
        lead_x = s * (xs[xs.index(x) - 1] + tw - x) if x > 0 else 0
        trail_y = s * (y + th - ys[ys.index(y) + 1]) if y != ys[-1] else 0
        trail_x = s * (x + tw - xs[xs.index(x) + 1]) if x != xs[-1] else 0
        w = _ramp(s * th, lead_y, trail_y)[:, None, None] * _ramp(s * tw, lead_x, trail_x)[None, :, None]
        self.acc[s * y:s * (y + th), s * x:s * (x + tw)] += sr[:s * th, :s * tw] * w
        self.wsum[s * y:s * (y + th), s * x:s * (x + tw)] += w
        self.left -= 1

    def result(self) -> np.ndarray:
        return self.acc / self.wsum
