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
    generate_fft_sized()


def cube_grads(xb, call_model_args=None, expected_keys=None):
    """f(x) = sum(x^3 / 3): its gradient x * x is exact in any language."""
    return {s.INPUT_OUTPUT_GRADIENTS: xb * xb}


def generate_fft_sized():
    """Images large enough (both sides >= 128) that the wide kernels' blurs
    take the FFT path; small sigmas on the same path still take the others."""
    rng = np.random.default_rng(35)
    x32 = rng.uniform(-1, 1, (136, 130, 3)).astype(np.float32)
    save(TOPIC, "fft_x", x32)
    save(TOPIC, "fft_f32", s.BlurIG().GetMask(x32, cube_grads, max_sigma=50.0, steps=10, batch_size=4))
    x64 = x32.astype(np.float64)
    save(TOPIC, "fft_f64", s.BlurIG().GetMask(x64, cube_grads, max_sigma=40.0, steps=8, batch_size=3))
    # One channel, odd height (the rows pair across two image rows); the
    # reference takes H x W x 1, which the crate's rank-2 input equals.
    x1 = x64[:135, :129, :1].copy()
    mask1 = s.BlurIG().GetMask(x1, cube_grads, max_sigma=30.0, steps=6, batch_size=1)
    save(TOPIC, "fft_one_channel", mask1[:, :, 0])
