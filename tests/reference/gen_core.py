"""Fixtures for Vanilla Gradients, Integrated Gradients and the visualizations.

The model is a small two-layer tanh network, f(x) = v . tanh(W x + b), over a
flattened 6 x 5 x 3 image; its gradient is W^T (v * (1 - tanh(W x + b)^2)).
The Rust tests rebuild the same model from the saved W, b, v.

recorded_*: runs whose model returns random gradients, unrelated to its
input, recording every call (the batch it received and the gradients it
returned, concatenated over calls, and each call's batch size). The Rust test
replays them, so what is compared is the method's own batching, arithmetic
and accumulation, not a port of the model.
"""
import numpy as np
import saliency.core as s

from compat import save, tanh_net

TOPIC = "core"
SHAPE = (6, 5, 3)
HIDDEN = 8



def recording_model(rng, inputs, grads, sizes):
    """A call_model_function returning N(0, 1) gradients of the batch's shape
    and dtype, appending what it received and returned."""
    def call_model(x_batch, call_model_args=None, expected_keys=None):
        g = rng.normal(0.0, 1.0, x_batch.shape).astype(x_batch.dtype)
        inputs.append(np.array(x_batch, copy=True))
        grads.append(g)
        sizes.append(x_batch.shape[0])
        return {s.INPUT_OUTPUT_GRADIENTS: g}
    return call_model


def save_recorded(name, mask, inputs, grads, sizes):
    save(TOPIC, f"recorded_{name}_inputs", np.concatenate(inputs))
    save(TOPIC, f"recorded_{name}_grads", np.concatenate(grads))
    save(TOPIC, f"recorded_{name}_batch_sizes", np.array(sizes, dtype=np.int64))
    save(TOPIC, f"recorded_{name}_mask", mask)


def generate_recorded(x, baseline):
    # Its own generator, so the fixtures above keep their values.
    rng = np.random.default_rng(20261126)
    calls = ([], [], [])
    mask = s.GradientSaliency().GetMask(x, recording_model(rng, *calls))
    save_recorded("vanilla", mask, *calls)
    calls = ([], [], [])
    mask = s.IntegratedGradients().GetMask(
        x, recording_model(rng, *calls), x_baseline=baseline, x_steps=10, batch_size=4)
    save_recorded("ig_steps10_batch4_baseline", mask, *calls)


def generate():
    rng = np.random.default_rng(20261125)
    d = int(np.prod(SHAPE))
    W = rng.normal(0, 1.0 / np.sqrt(d), (HIDDEN, d))
    b = rng.normal(0, 0.5, HIDDEN)
    v = rng.normal(0, 1.0, HIDDEN)
    x = rng.uniform(-1, 1, SHAPE)
    baseline = rng.uniform(-0.5, 0.5, SHAPE)
    for name, arr in [("W", W), ("b", b), ("v", v), ("x", x), ("baseline", baseline)]:
        save(TOPIC, name, arr)
    model = tanh_net(W, b, v)

    save(TOPIC, "vanilla_f64", s.GradientSaliency().GetMask(x, model))
    save(TOPIC, "vanilla_f32", s.GradientSaliency().GetMask(x.astype(np.float32), model))
    ig = s.IntegratedGradients()
    for bs in (1, 7, 25):
        save(TOPIC, f"ig_steps25_batch{bs}_f64", ig.GetMask(x, model, x_steps=25, batch_size=bs))
    save(TOPIC, "ig_steps10_baseline_f64", ig.GetMask(x, model, x_baseline=baseline, x_steps=10, batch_size=3))
    save(TOPIC, "ig_steps25_batch4_f32",
         ig.GetMask(x.astype(np.float32), model, x_steps=25, batch_size=4).astype(np.float32))

    mask = ig.GetMask(x, model, x_steps=25, batch_size=1)
    for p in (99, 50, 100):
        save(TOPIC, f"grayscale_p{p}", s.VisualizeImageGrayscale(mask, percentile=p))
        save(TOPIC, f"diverging_reference_p{p}", s.VisualizeImageDiverging(mask, percentile=p))

    generate_recorded(x, baseline)
