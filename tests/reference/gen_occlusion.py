"""Fixtures for Occlusion.

The model scores a flattened 300-value input (a 10 x 10 x 3 colour image or a
15 x 20 grey image) with a small tanh network, f(x) = v . tanh(W x + b),
returned as OUTPUT_LAYER_VALUES of shape [B, 1] in the batch's dtype. The Rust
tests rebuild the same model from the saved W, b, v.
"""
import numpy as np
import saliency.core as s

from compat import save

TOPIC = "occlusion"
D = 300
HIDDEN = 8


def tanh_score(W, b, v):
    def call_model(x_batch, call_model_args=None, expected_keys=None):
        x = np.asarray(x_batch, dtype=np.float64).reshape(x_batch.shape[0], -1)
        out = np.tanh(x @ W.T + b) @ v
        return {s.OUTPUT_LAYER_VALUES: out.reshape(-1, 1).astype(x_batch.dtype)}
    return call_model


def generate():
    rng = np.random.default_rng(20261126)
    W = rng.normal(0, 2.0 / np.sqrt(D), (HIDDEN, D))
    b = rng.normal(0, 0.5, HIDDEN)
    v = rng.normal(0, 1.0, HIDDEN)
    rgb = rng.uniform(-1, 1, (10, 10, 3))
    gray = rng.uniform(-1, 1, (15, 20))
    for name, arr in [("W", W), ("b", b), ("v", v), ("rgb", rgb), ("gray", gray)]:
        save(TOPIC, name, arr)
    model = tanh_score(W, b, v)
    occ = s.Occlusion()

    save(TOPIC, "rgb_size4_f64", occ.GetMask(rgb, model, size=4, value=0))
    save(TOPIC, "rgb_size3_value03_f64", occ.GetMask(rgb, model, size=3, value=0.3))
    save(TOPIC, "gray_default_f64", occ.GetMask(gray, model))
    save(TOPIC, "gray_size5_valuem02_f64", occ.GetMask(gray, model, size=5, value=-0.2))
    save(TOPIC, "rgb_size4_f32", occ.GetMask(rgb.astype(np.float32), model, size=4, value=0))
