"""Fixtures for Grad-CAM (saliency.core.GradCam).

The model returns fixed layer values and gradients ([1, 7, 7, 64], saved),
channels-last as the reference expects; the Rust tests also feed the same
data channels-first. A second layer is the benchmark's formula layer
([1, 14, 14, 512] float32, rebuilt in Rust from its formula).
"""
import numpy as np
import saliency.core as s

from compat import save

TOPIC = "grad_cam"
X_SHAPE = (40, 36, 3)


def fixed_layer(values, grads):
    def call_model(x_batch, call_model_args=None, expected_keys=None):
        return {s.CONVOLUTION_LAYER_VALUES: values, s.CONVOLUTION_OUTPUT_GRADIENTS: grads}
    return call_model


def formula_layer():
    a = np.arange(14 * 14 * 512, dtype=np.float64).reshape(1, 14, 14, 512)
    values = np.abs(np.sin(0.001 * a)).astype(np.float32)
    grads = np.cos(0.0007 * a).astype(np.float32) * 0.01
    return values, grads


def generate():
    rng = np.random.default_rng(33)
    values = rng.normal(0.5, 1.0, (1, 7, 7, 64))
    grads = rng.normal(0.05, 0.1, (1, 7, 7, 64))
    save(TOPIC, "values", values)
    save(TOPIC, "grads", grads)
    x = np.zeros(X_SHAPE)
    model = fixed_layer(values, grads)
    cam = s.GradCam()
    for resize in (True, False):
        for three in (True, False):
            name = f"cam_resize{int(resize)}_three{int(three)}"
            save(TOPIC, name, cam.GetMask(x, model, should_resize=resize, three_dims=three))
    # Positive activations, negative gradients: the map is all zero.
    neg = fixed_layer(np.abs(values), -np.abs(grads))
    save(TOPIC, "cam_negative", cam.GetMask(x, neg, should_resize=True, three_dims=False))
    # The benchmark's layer (float32), resized to a 28 x 28 input.
    fv, fg = formula_layer()
    save(TOPIC, "cam_formula_f32",
         cam.GetMask(np.zeros((28, 28, 3), np.float32), fixed_layer(fv, fg), should_resize=True,
                     three_dims=False))
    save(TOPIC, "cam_formula_noresize_f32",
         cam.GetMask(np.zeros((28, 28, 3), np.float32), fixed_layer(fv, fg), should_resize=False,
                     three_dims=False))
