"""Fixtures for Blur IG (saliency.core.BlurIG).

The model is the two-layer tanh network of gen_core.py, f(x) = v . tanh(W x + b)
over a flattened 12 x 10 x 3 image (W, b, v saved); its gradient is
W^T (v * (1 - tanh(W x + b)^2)).
"""
import numpy as np
import saliency.core as s

from compat import save, tanh_net

TOPIC = "blur_ig"
SHAPE = (12, 10, 3)
HIDDEN = 8

# name, max_sigma, steps, grad_step, sqrt, batch_size
CASES = [
    ("small_sigma", 5.0, 20, 0.01, False, 1),
    ("large_sigma", 50.0, 30, 0.01, False, 1),
    ("sqrt_batch1", 8.0, 25, 0.01, True, 1),
    ("sqrt_batch5_reference_defect", 8.0, 25, 0.01, True, 5),
    ("linear_batch7", 8.0, 20, 0.05, False, 7),
]



def generate():
    rng = np.random.default_rng(34)
    d = int(np.prod(SHAPE))
    W = rng.normal(0, 1.0 / np.sqrt(d), (HIDDEN, d))
    b = rng.normal(0, 0.5, HIDDEN)
    v = rng.normal(0, 1.0, HIDDEN)
    x = rng.uniform(-1, 1, SHAPE)
    for name, arr in [("W", W), ("b", b), ("v", v), ("x", x)]:
        save(TOPIC, name, arr)
    model = tanh_net(W, b, v)
    for name, max_sigma, steps, grad_step, sqrt, batch_size in CASES:
        save(TOPIC, name, s.BlurIG().GetMask(x, model, max_sigma=max_sigma, steps=steps,
                                             grad_step=grad_step, sqrt=sqrt, batch_size=batch_size))
    x32 = x.astype(np.float32)
    save(TOPIC, "f32_batch4", s.BlurIG().GetMask(x32, model, max_sigma=6.0, steps=20, batch_size=4))
