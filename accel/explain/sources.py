"""What the explanation report (accel/report.py) cites and reads off the reference: the sources
catalogue (accel/explain/sources.json, the only sources the report may cite, with the RCAN paper's
table), the reference's trace stages, and a summary of what channel attention did."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SOURCES = json.loads((Path(__file__).parent / "sources.json").read_text())


def catalogue_urls() -> set[str]:
    return {u for s in SOURCES["sources"] for u in s["links"].values()}


# --- the architecture, stage by stage: shapes, parameters, compute -------------------------------

TRACE_KEYS = ["sub_mean", "head", "body", None, "upsampler", "tail", "add_mean"]  # body covers body conv too


# --- channel attention: what it did --------------------------------------------------------------

def attention_summary(att: np.ndarray) -> list[dict]:
    """Per group: the mean gate, the channels it boosts most and damps most (mean over the group's RCABs)."""
    out = []
    for g in range(att.shape[0]):
        per_channel = att[g].mean(axis=0)
        order = np.argsort(per_channel)
        out.append({"group": g, "mean": float(per_channel.mean()), "min": float(per_channel.min()),
                    "max": float(per_channel.max()),
                    "boosted": [(int(i), float(per_channel[i])) for i in order[::-1][:3]],
                    "damped": [(int(i), float(per_channel[i])) for i in order[:3]]})
    return out
