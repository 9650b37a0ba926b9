"""Fixtures for Guided IG.

The model is a small two-layer tanh network, f(x) = v . tanh(W x + b), over a
flattened 7 x 6 x 3 input; its gradient is W^T (v * (1 - tanh(W x + b)^2)),
returned in the batch's dtype. The Rust tests rebuild the same model from the
saved W, b, v.
"""
import numpy as np
import saliency.core as s

from compat import save, tanh_net

TOPIC = "guided_ig"
SHAPE = (7, 6, 3)
HIDDEN = 8



def generate():
    rng = np.random.default_rng(20261127)
    d = int(np.prod(SHAPE))
    W = rng.normal(0, 2.0 / np.sqrt(d), (HIDDEN, d))
    b = rng.normal(0, 0.5, HIDDEN)
    v = rng.normal(0, 1.0, HIDDEN)
    x = rng.uniform(-1, 1, SHAPE)
    baseline = rng.uniform(-0.5, 0.5, SHAPE)
    # Half of the features equal to the input: their alpha is undefined.
    partial = np.where(rng.uniform(size=SHAPE) < 0.5, x, baseline)
    for name, arr in [("W", W), ("b", b), ("v", v), ("x", x), ("baseline", baseline), ("partial", partial)]:
        save(TOPIC, name, arr)
    model = tanh_net(W, b, v)
    gig = s.GuidedIG()

    save(TOPIC, "default_f64", gig.GetMask(x, model))
    save(TOPIC, "baseline_steps50_f64",
         gig.GetMask(x, model, x_baseline=baseline, x_steps=50, fraction=0.1, max_dist=0.1))
    save(TOPIC, "unbounded_steps30_f64", gig.GetMask(x, model, x_steps=30, fraction=0.5, max_dist=1.0))
    save(TOPIC, "straight_steps20_f64", gig.GetMask(x, model, x_steps=20, fraction=0.25, max_dist=0.0))
    save(TOPIC, "partial_baseline_f64",
         gig.GetMask(x, model, x_baseline=partial, x_steps=40, fraction=0.3, max_dist=0.05))
    # Input and baseline far from 0 but close to each other: x_max rounds
    # coarsely next to alpha_min.
    far_x = 1e11 + np.round(x * 64) / 64
    far_baseline = 1e11 + np.round(baseline * 64) / 64
    save(TOPIC, "far_x", far_x)
    save(TOPIC, "far_baseline", far_baseline)
    save(TOPIC, "far_steps30_f64",
         gig.GetMask(far_x, lambda b, call_model_args=None, expected_keys=None:
                     model(b - 1e11, call_model_args, expected_keys),
                     x_baseline=far_baseline, x_steps=30, fraction=0.25, max_dist=0.05))
    # The reference computes in float64 whatever the input's dtype.
    save(TOPIC, "default_f32", gig.GetMask(x.astype(np.float32), model))
