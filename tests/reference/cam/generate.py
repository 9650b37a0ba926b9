#!/usr/bin/env python3
"""Writes tests/fixtures/cam/<net>/ from Captum 0.9 and pytorch-grad-cam 1.5.7.

    /path/to/venv/bin/python tests/reference/cam/generate.py

The networks, their weights, inputs, classes and layers are those of the
ONNX fixtures (tests/fixtures/onnx/<net>/): the model is rebuilt with
tests/reference/onnx/generate.py's `build` (same seeds) and checked against
the committed logits, so the Rust tests evaluate the committed model.onnx.
See README.md beside this file for what each file is. Everything is float32,
one torch thread, fixed seeds: a rerun writes the same bytes.
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "onnx"))

import generate as onnx_gen  # noqa: E402

import captum  # noqa: E402
from captum.attr import GradientShap, GuidedGradCam, InputXGradient  # noqa: E402
import pytorch_grad_cam  # noqa: E402
from pytorch_grad_cam import (EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM,  # noqa: E402
                              LayerCAM, ScoreCAM, XGradCAM)
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import (  # noqa: E402
    get_2d_projection, get_2d_projection_with_sign_correction)

NETS = ["vgg", "resnet"]
OUT = os.path.join(ROOT, "tests", "fixtures", "cam")
ONNX = os.path.join(ROOT, "tests", "fixtures", "onnx")

CAMS = {"gradcam": GradCAM, "gradcam_plusplus": GradCAMPlusPlus, "xgradcam": XGradCAM,
        "layercam": LayerCAM, "hirescam": HiResCAM, "eigencam": EigenCAM, "scorecam": ScoreCAM}
SCORECAM_BATCH = 16  # pytorch-grad-cam's default
SHAP_BASELINES = 3
SHAP_EXACT_SAMPLES = 8
SHAP_STAT_SAMPLES = 4000  # the expectation's estimate
SHAP_SEED = 11


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def save(d, name, arr):
    np.save(os.path.join(d, name), np.ascontiguousarray(arr, dtype=np.float32))


def finish(cam, size):
    """BaseCAM's finish for one layer: ReLU, scale_cam_image with the resize,
    aggregate_multi_layers (ReLU, mean over the one layer, scale again)."""
    scaled = scale_cam_image(np.maximum(cam, 0), size)[:, None, :]
    return scale_cam_image(np.mean(np.maximum(scaled, 0), axis=1))


def run_cams(model, layer, x, classes, meta):
    size = (x.shape[-1], x.shape[-2])  # (width, height), as BaseCAM passes it
    targets = [ClassifierOutputTarget(c) for c in classes]
    out = {}
    for name, ctor in CAMS.items():
        cam = ctor(model=model, target_layers=[layer])
        if name == "scorecam":
            cam.batch_size = SCORECAM_BATCH
        full = cam(input_tensor=torch.from_numpy(x), targets=targets)
        acts = cam.activations_and_grads.activations[0].cpu().numpy()
        grads = (cam.activations_and_grads.gradients[0].cpu().numpy()
                 if cam.activations_and_grads.gradients else None)
        raw = np.maximum(cam.get_cam_image(torch.from_numpy(x), layer, targets, acts, grads, False), 0)
        # The pipeline above must reproduce the library's output.
        again = finish(raw, size)
        meta["checks"][f"{name}_finish_replayed"] = rel_err(again, full)
        assert rel_err(again, full) < 1e-6, name
        out[name] = full
        out[name + "_raw"] = raw
        if name == "eigencam":
            fixed = get_2d_projection_with_sign_correction(acts)
            plain = get_2d_projection(acts)
            same_sign = [bool(np.allclose(f, p, atol=1e-6 * np.abs(p).max())) for f, p in zip(fixed, plain)]
            meta["eigencam_lapack_sign_agrees"] = same_sign
            out["eigencam_signfix"] = finish(fixed, size)
            out["eigencam_signfix_raw"] = np.maximum(fixed, 0)
        cam.activations_and_grads.release()
    return out


def shap_exact(model, x, classes, baselines):
    """Captum's GradientShap with its draws recorded (np.random.choice for the
    baselines, np.random.uniform for alpha; no noise)."""
    recorded = {}
    choice, uniform = np.random.choice, np.random.uniform

    def rec_choice(*a, **k):
        r = choice(*a, **k)
        recorded["choice"] = np.asarray(r).tolist()
        return r

    def rec_uniform(*a, **k):
        r = uniform(*a, **k)
        recorded["uniform"] = np.asarray(r).tolist()
        return r

    np.random.seed(SHAP_SEED)
    np.random.choice, np.random.uniform = rec_choice, rec_uniform
    try:
        attr = GradientShap(model).attribute(
            torch.from_numpy(x), baselines=torch.from_numpy(baselines), n_samples=SHAP_EXACT_SAMPLES,
            stdevs=0.0, target=classes)
    finally:
        np.random.choice, np.random.uniform = choice, uniform
    n = SHAP_EXACT_SAMPLES
    draws = [[[int(recorded["choice"][i * n + k]), float(recorded["uniform"][i * n + k])]
              for k in range(n)] for i in range(x.shape[0])]
    return attr.detach().numpy(), draws


def shap_samples(model, x, classes, baselines, draws):
    """(x - b) * grad(alpha x + (1 - alpha) b) per draw, in float32 as Captum."""
    rows = []
    for i, c in enumerate(classes):
        xi = torch.from_numpy(x[i:i + 1])
        for b, a in draws[i]:
            bt = torch.from_numpy(baselines[b:b + 1])
            at = torch.tensor(a, dtype=torch.float32)
            pt = (at * xi + (1.0 - at) * bt).requires_grad_(True)
            (g,) = torch.autograd.grad(model(pt)[0, c], pt)
            rows.append(((xi - bt) * g).detach().numpy()[0])
    return np.stack(rows).reshape((x.shape[0], -1) + x.shape[1:])


def generate_net(name):
    src = os.path.join(ONNX, name)
    with open(os.path.join(src, "meta.json")) as f:
        onnx_meta = json.load(f)
    model, _, _, seed = onnx_gen.build(name)
    x = np.load(os.path.join(src, "input.npy"))
    classes = onnx_meta["classes"]
    logits = model(torch.from_numpy(x)).detach().numpy()
    assert rel_err(logits, np.load(os.path.join(src, "logits_torch.npy"))) < 1e-6, name
    layer_path = onnx_meta["captum"]["LayerGradCam"]["layer_module"]
    layer = onnx_gen.get_module(model, layer_path)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    meta = {"net": name, "onnx_fixture": f"tests/fixtures/onnx/{name}", "classes": classes,
            "layer": onnx_meta["layer"], "layer_module": layer_path, "checks": {},
            "versions": {"torch": torch.__version__, "captum": captum.__version__,
                         "grad-cam": "1.5.7", "numpy": np.__version__}}
    xt = torch.from_numpy(x)

    save(d, "input_x_gradient.npy", InputXGradient(model).attribute(xt, target=classes).detach().numpy())
    save(d, "guided_grad_cam.npy",
         GuidedGradCam(model, layer).attribute(xt, target=classes).detach().numpy())
    save(d, "guided_grad_cam_bilinear.npy",
         GuidedGradCam(model, layer).attribute(xt, target=classes, interpolate_mode="bilinear")
         .detach().numpy())
    meta["GuidedGradCam"] = {"interpolate_mode": ["nearest", "bilinear"], "attribute_to_layer_input": False}

    for key, arr in run_cams(model, layer, x, classes, meta).items():
        save(d, f"{key}.npy", arr)
    meta["cams"] = {"targets": "ClassifierOutputTarget(class) per image", "aug_smooth": False,
                    "eigen_smooth": False, "scorecam_batch_size": SCORECAM_BATCH,
                    "files": "<cam>.npy: the library's output [2, H, W]; <cam>_raw.npy: the ReLU'd "
                             "layer-size map get_cam_image gives [2, h, w]"}

    rng = np.random.default_rng(500 + seed)
    baselines = rng.uniform(0.0, 1.0, (SHAP_BASELINES,) + x.shape[1:]).astype(np.float32)
    save(d, "shap_baselines.npy", baselines)
    exact, draws = shap_exact(model, x, classes, baselines)
    save(d, "gradient_shap.npy", exact)
    replay = shap_samples(model, x, classes, baselines, draws).mean(axis=1)
    meta["checks"]["gradient_shap_replayed"] = rel_err(replay, exact)
    assert rel_err(replay, exact) < 1e-5
    # The expectation over the draws, and each element's deviation of one
    # sample, from SHAP_STAT_SAMPLES draws of numpy's generator.
    stat_rng = np.random.default_rng(900 + seed)
    big = [[[int(stat_rng.integers(SHAP_BASELINES)), float(stat_rng.uniform())]
            for _ in range(SHAP_STAT_SAMPLES)] for _ in classes]
    samples = shap_samples(model, x, classes, baselines, big).astype(np.float64)
    save(d, "gradient_shap_mean.npy", samples.mean(axis=1))
    save(d, "gradient_shap_sd.npy", samples.std(axis=1, ddof=1))
    meta["GradientShap"] = {"baselines": "shap_baselines.npy", "n_samples": SHAP_EXACT_SAMPLES,
                            "stdevs": 0.0, "np_seed": SHAP_SEED, "draws": draws,
                            "stat_samples": SHAP_STAT_SAMPLES}
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(name, json.dumps(meta["checks"]), "lapack sign agrees:", meta["eigencam_lapack_sign_agrees"])


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for name in sys.argv[1:] or NETS:
        generate_net(name)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    assert total < 2 * 1024 * 1024, total
    print("fixtures:", total, "B")


if __name__ == "__main__":
    main()
