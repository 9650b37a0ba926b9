"""Shared set-up for the fixture generators.

The reference is PAIR saliency 0.2.1 (pip install saliency==0.2.1 scikit-image
scipy). It calls np.quantile(..., interpolation=), which numpy 2 renamed to
method=; the shim below maps one to the other so the reference runs unchanged.
"""
import os

import numpy as np

_quantile = np.quantile


def _compat_quantile(a, q, interpolation=None, **kw):
    if interpolation is not None:
        kw["method"] = interpolation
    return _quantile(a, q, **kw)


np.quantile = _compat_quantile

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


def save(topic, name, array):
    """Writes tests/fixtures/<topic>/<name>.npy."""
    folder = os.path.join(FIXTURES, topic)
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, name + ".npy"), np.ascontiguousarray(array))


def workload_image(h=224, w=224):
    """The benchmark image of WORKLOADS.md (float32)."""
    i = np.arange(h, dtype=np.float64)[:, None, None]
    j = np.arange(w, dtype=np.float64)[None, :, None]
    c = np.arange(3, dtype=np.float64)[None, None, :]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    r = np.sqrt((i - cy) ** 2 + (j - cx) ** 2)
    ring = 0.8 * np.exp(-(((r - 0.4 * h) / 6.0) ** 2))
    blob = 0.6 * np.exp(-((i - 0.62 * h) ** 2 + (j - 0.4 * w) ** 2) / (2 * 25.0**2))
    tex = 0.15 * np.sin(0.35 * i + 0.9 * c) * np.cos(0.29 * j - 0.5 * c)
    cells = 0.35 * np.sin(0.9 * i + 2.0 * np.sin(0.13 * j)) * np.sin(0.7 * j + 2.0 * np.cos(0.11 * i) + 0.6 * c)
    return (ring + blob + tex + cells - 0.15 * c).astype(np.float32)


def tanh_net(W, b, v):
    """The fixtures' model, f(x) = v . tanh(W x + b) on the flattened input, as
    a call_model_function returning its gradient W^T (v * (1 - tanh^2)) in the
    batch's dtype. tests/common/mod.rs rebuilds it from the saved W, b, v."""
    import saliency.core as s

    def call_model(x_batch, call_model_args=None, expected_keys=None):
        x = np.asarray(x_batch, dtype=np.float64).reshape(x_batch.shape[0], -1)
        pre = x @ W.T + b
        grads = ((1.0 - np.tanh(pre) ** 2) * v) @ W
        return {s.INPUT_OUTPUT_GRADIENTS: grads.reshape(x_batch.shape).astype(x_batch.dtype)}
    return call_model
