"""The shipped compact model: loads in both implementations, same output, and its model card's
Set5 score is what it really scores."""
import json

import numpy as np
from PIL import Image

import accel
import reference
from accel.api import DEFAULT_WEIGHTS
from accel.evaluate import evaluate_model

from conftest import SET5, assert_close

CARD = DEFAULT_WEIGHTS.with_suffix(".json")


def test_shipped_weights_in_both_implementations():
    weights, config = reference.load_weights(DEFAULT_WEIGHTS)
    assert config == reference.RCANConfig.compact(2)
    assert DEFAULT_WEIGHTS.stat().st_size <= 20e6
    lr = np.asarray(Image.open(SET5 / "LR_x2" / "bird_LRBI_x2.png").convert("RGB"), np.float32)[:48, :40]
    ours = np.asarray(accel.forward(accel.load_model(), lr[None]))[0]
    # Trained weights, 15 RCABs deep: same float32 bound as the random-weight tests.
    assert_close(ours, reference.forward(weights, config, lr), 1e-3, 1e-6, "shipped accel vs reference")


def test_model_card_score_is_reproduced():
    card = json.loads(CARD.read_text())
    md = DEFAULT_WEIGHTS.with_suffix(".md").read_text()
    assert md.startswith("---\nlicense: mit\n") and "pipeline_tag: image-to-image" in md   # model-hub front matter
    assert f"value: {card['set5_x2']['psnr']:.2f}" in md and "../" not in md
    result = evaluate_model(SET5 / "HR_x2", 2, accel.load_model(), progress=False)
    assert abs(result["mean"]["psnr"] - card["set5_x2"]["psnr"]) < 0.01, (result["mean"], card["set5_x2"])
    assert abs(result["bicubic"]["psnr"] - card["set5_x2"]["bicubic_psnr"]) < 0.01
    assert result["mean"]["psnr"] > result["bicubic"]["psnr"] + 1.0   # beats bicubic by a wide margin
