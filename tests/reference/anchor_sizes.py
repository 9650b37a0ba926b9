#!/usr/bin/env python3
"""Times the reference (PAIR saliency 0.2.1) on the benchmark workloads of
bench/WORKLOADS.md at any image size, beside `cargo run --release --example
workloads -- --size S`, in the same format: one line per workload,
`NAME<TAB>median seconds<TAB>median seconds of its model calls alone`.

    pip install saliency==0.2.1 scikit-image scipy
    python3 tests/reference/anchor_sizes.py [--size S] [--repeat N] [NAME ...]

The image is the 224 x 224 workload image drawn at S x S x 3: the formula
of WORKLOADS.md at pixel centres mapped onto the 224 grid,
u = (i + 0.5) 224 / S - 0.5, so every feature scales with S and XRAI (which
segments at 224) sees about the same picture at every size; at 224 it is
WORKLOADS.md's image exactly, and it equals the crate's
(`examples/common/mod.rs`, `scaled_workload_image`) to float32 rounding. X64
is its top-left 64 x 64 crop. Beside WORKLOADS.md's list, `occlusion`
occludes the full S x S image (window 15, value 0), its model the weighted
sum over the whole image with w = cos(0.1 k) in row-major order; the
reference copies the image per window, so it is slow from 448 on.
`occlusion_own` is the same with a model that reads nothing and returns
zeros, so its time is the method's own cost alone. Every model call of the
last run is recorded (batch shape) and replayed
to the same model alone, on batches of those shapes built beforehand, so the
reference's own cost is the difference of the two columns.
"""
import argparse
import time

import numpy as np

import compat  # noqa: F401  (numpy shim for the reference)
import saliency.core as s
from saliency.core import xrai as _xrai


def workload_image(size):
    # Pixel centres of the S grid on the 224 grid; exact integers at 224.
    u = (np.arange(size, dtype=np.float64) + 0.5) * (224.0 / size) - 0.5
    i = u[:, None, None]
    j = u[None, :, None]
    c = np.arange(3, dtype=np.float64)[None, None, :]
    centre = (224 - 1) / 2.0
    r = np.sqrt((i - centre) ** 2 + (j - centre) ** 2)
    ring = 0.8 * np.exp(-(((r - 0.4 * 224) / 6.0) ** 2))
    blob = 0.6 * np.exp(-((i - 0.62 * 224) ** 2 + (j - 0.4 * 224) ** 2) / (2 * 25.0**2))
    tex = 0.15 * np.sin(0.35 * i + 0.9 * c) * np.cos(0.29 * j - 0.5 * c)
    cells = 0.35 * np.sin(0.9 * i + 2.0 * np.sin(0.13 * j)) * np.sin(0.7 * j + 2.0 * np.cos(0.11 * i) + 0.6 * c)
    return (ring + blob + tex + cells - 0.15 * c).astype(np.float32)


def near_free_models(size):
    """The workloads' models: gradients of sum(x^2), Grad-CAM's fixed layer,
    Occlusion's weighted sums over X64 and over the full S x S image."""
    a = np.arange(14 * 14 * 512, dtype=np.float64).reshape(1, 14, 14, 512)
    values = np.abs(np.sin(0.001 * a)).astype(np.float32)
    gradients = np.cos(0.0007 * a).astype(np.float32) * 0.01
    def weights(n):
        return np.cos(0.1 * np.arange(n * n * 3, dtype=np.float64)).reshape(n, n, 3).astype(np.float32)

    weights64, weights_full = weights(64), weights(size)

    def grads(xb, call_model_args=None, expected_keys=None):
        return {s.INPUT_OUTPUT_GRADIENTS: 2.0 * xb}

    def cam(xb, call_model_args=None, expected_keys=None):
        return {s.CONVOLUTION_LAYER_VALUES: values, s.CONVOLUTION_OUTPUT_GRADIENTS: gradients}

    def weighted_sums(w):
        def outputs(xb, call_model_args=None, expected_keys=None):
            return {s.OUTPUT_LAYER_VALUES: (xb * w).reshape(xb.shape[0], -1).sum(axis=1, keepdims=True)}

        return outputs

    def zeros(xb, call_model_args=None, expected_keys=None):
        # Reads nothing: the method's own cost alone.
        return {s.OUTPUT_LAYER_VALUES: np.zeros((np.shape(xb)[0], 1), dtype=np.float32)}

    return {"grads": grads, "cam": cam, "outputs": weighted_sums(weights64), "outputs_full": weighted_sums(weights_full),
            "zeros": zeros}


class Recorder:
    """Wraps a model function, recording the shape and keys of every call."""

    def __init__(self, model):
        self.model = model
        self.calls = []

    def __call__(self, xb, call_model_args=None, expected_keys=None):
        self.calls.append((np.shape(xb), expected_keys))
        return self.model(xb, call_model_args, expected_keys)

    def replay(self):
        batches = {shape: np.full(shape, 0.5, dtype=np.float32) for shape, _ in self.calls}
        start = time.perf_counter()
        for shape, keys in self.calls:
            self.model(batches[shape], None, keys)
        return time.perf_counter() - start


def workloads(size):
    x = workload_image(size)
    x64 = x[:64, :64].copy()
    fast = s.XRAIParameters()
    fast.algorithm = "fast"
    # name: (model, run(model))
    return {
        "vanilla": ("grads", lambda m: s.GradientSaliency().GetMask(x, m)),
        "ig": ("grads", lambda m: s.IntegratedGradients().GetMask(x, m, x_steps=25, batch_size=25)),
        "smoothgrad_ig": ("grads", lambda m: s.IntegratedGradients().GetSmoothedMask(
            x, m, stdev_spread=0.15, nsamples=25, magnitude=True, x_steps=25, batch_size=25)),
        "blur_ig": ("grads", lambda m: s.BlurIG().GetMask(
            x, m, max_sigma=50, steps=100, grad_step=0.01, batch_size=25)),
        "guided_ig": ("grads", lambda m: s.GuidedIG().GetMask(x, m, x_steps=200, fraction=0.25, max_dist=0.02)),
        "grad_cam": ("cam", lambda m: s.GradCam().GetMask(x, m, should_resize=True, three_dims=True)),
        "occlusion64": ("outputs", lambda m: s.Occlusion().GetMask(x64, m, size=15, value=0)),
        "occlusion": ("outputs_full", lambda m: s.Occlusion().GetMask(x, m, size=15, value=0)),
        "occlusion_own": ("zeros", lambda m: s.Occlusion().GetMask(x, m, size=15, value=0)),
        "segments": (None, lambda m: _xrai._get_segments_felzenszwalb(x)),
        "xrai_full": ("grads", lambda m: s.XRAI().GetMask(x, m, batch_size=25)),
        "xrai_fast": ("grads", lambda m: s.XRAI().GetMask(x, m, batch_size=25, extra_parameters=fast)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    if args.size < 64:
        ap.error("--size must be at least 64 (occlusion64 crops 64 x 64)")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    models = near_free_models(args.size)
    table = workloads(args.size)
    unknown = [name for name in args.names if name not in table]
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(table)}")
    for name in args.names or list(table):
        model_name, run = table[name]
        recorder = Recorder(models[model_name] if model_name else None)
        times = []
        for _ in range(args.repeat):
            recorder.calls = []
            start = time.perf_counter()
            run(recorder)
            times.append(time.perf_counter() - start)
        model_times = sorted(recorder.replay() for _ in range(args.repeat))
        times.sort()
        print(f"{name}\t{times[len(times) // 2]:.6f}\t{model_times[len(model_times) // 2]:.6f}", flush=True)


if __name__ == "__main__":
    main()
