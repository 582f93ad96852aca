"""The shipped models: each loads in both implementations with the same output, and its model card's
Set5 score is what it really scores."""
import json

import numpy as np
import pytest
from conftest import SET5, assert_close
from PIL import Image

import accel
import reference
from accel.api import DEFAULT_MODEL, SHIPPED
from accel.degrade.chain import CHAINS
from accel.evaluate import evaluate_model

PRESET = {"compact": reference.RCANConfig.compact(2), "deep": reference.RCANConfig.deep(2),
          "real": reference.RCANConfig.deep(2), "real-compact": reference.RCANConfig.compact(2)}


def test_every_shipped_model_is_tested_and_the_default_is_the_best_scoring():
    assert set(SHIPPED) == set(PRESET)
    scores = {name: json.loads(path.with_suffix(".json").read_text())["set5_x2"]["psnr"]
              for name, path in SHIPPED.items()}
    assert DEFAULT_MODEL == max(scores, key=scores.get), scores


@pytest.mark.parametrize("name", sorted(PRESET))
def test_shipped_weights_in_both_implementations(name):
    weights, config = reference.load_weights(SHIPPED[name])
    assert config == PRESET[name]
    assert SHIPPED[name].stat().st_size <= 32e6
    lr = np.asarray(Image.open(SET5 / "LR_x2" / "bird_LRBI_x2.png").convert("RGB"), np.float32)[:48, :40]
    ours = np.asarray(accel.forward(accel.load_model(model=name), lr[None]))[0]
    # Trained weights, 15 (compact) or 50 (deep) RCABs: the float32 bound of the random-weight tests.
    assert_close(ours, reference.forward(weights, config, lr), 1e-3, 1e-6, f"shipped {name}: accel vs reference")


@pytest.mark.parametrize("name", sorted(PRESET))
def test_model_card_score_is_reproduced(name):
    card = json.loads(SHIPPED[name].with_suffix(".json").read_text())
    md = SHIPPED[name].with_suffix(".md").read_text()
    assert md.startswith("---\nlicense: mit\n") and "pipeline_tag: image-to-image" in md   # model-hub front matter
    assert f"value: {card['set5_x2']['psnr']:.2f}" in md and "../" not in md
    result = evaluate_model(SET5 / "HR_x2", 2, accel.load_model(model=name), progress=False)
    assert abs(result["mean"]["psnr"] - card["set5_x2"]["psnr"]) < 0.01, (result["mean"], card["set5_x2"])
    assert abs(result["bicubic"]["psnr"] - card["set5_x2"]["bicubic_psnr"]) < 0.01
    assert result["mean"]["psnr"] > result["bicubic"]["psnr"] + 1.0   # beats bicubic by a wide margin


@pytest.mark.parametrize("real, bicubic", [("real", "deep"), ("real-compact", "compact")])
def test_real_photo_models_beat_their_bicubic_twins_on_degraded_photos(real, bicubic):
    # Set5 degraded as rcan-evaluate --degrade does it (Pillow blur, noise, JPEG): images no fine-tune saw.
    scores = {name: evaluate_model(SET5 / "HR_x2", 2, accel.load_model(model=name), progress=False, degrade=0)
              for name in (real, bicubic)}
    gain = scores[real]["mean"]["psnr"] - scores[bicubic]["mean"]["psnr"]
    assert gain > 0.3, {k: v["mean"] for k, v in scores.items()}
    # and well above bicubic on average (not on every image: the held-out table in the cards gives the gains
    # and the share)
    assert scores[real]["mean"]["psnr"] > scores[real]["bicubic"]["psnr"] + 0.5
    card = json.loads(SHIPPED[real].with_suffix(".json").read_text())
    assert card["training"]["degradation"] in CHAINS and card["degraded_heldout"]["images"] == 25
