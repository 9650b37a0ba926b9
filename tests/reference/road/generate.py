"""Fixtures for ROAD (pytorch-grad-cam 1.5.7) and Captum 0.9's infidelity and
sensitivity_max: tests/fixtures/road/.

Run with the torch environment (see README.md in this folder):

    /work/venv-torch/bin/python tests/reference/road/generate.py

Images are channels-last [H, W, C] as the crate takes them; pytorch-grad-cam
gets them transposed to (1, C, H, W). The model is a formula the Rust tests
rebuild from the saved weights:

    ROAD:    f(x) = sum(W * x) + 0.5 * sum(V * x^2)
    Captum:  f(x) = sum(W * x) + 0.5 * sum(V * x^2) + tanh(sum(U * x))
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from compat import save  # noqa: E402

import captum  # noqa: E402
import pytorch_grad_cam  # noqa: E402
from captum.attr import Saliency  # noqa: E402
from captum.metrics import infidelity, sensitivity_max  # noqa: E402
from pytorch_grad_cam.metrics.perturbation_confidence import (  # noqa: E402
    AveragerAcrossThresholds,
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from pytorch_grad_cam.metrics.road import (  # noqa: E402
    NoisyLinearImputer,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirstAverage,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

TOPIC = "road"
PERCENTILES = [10, 20, 30, 40, 50, 60, 70, 80, 90]
# Seeds of the statistical checks (noise on): the reference's spread.
NOISY_RUNS = 400

torch.set_num_threads(1)


class Quadratic(torch.nn.Module):
    """f(x) = sum(W * x) + 0.5 * sum(V * x^2) per image, as (B, 1), in float64.
    W and V are channels-last [H, W, C]; the input is (B, C, H, W)."""

    def __init__(self, w, v):
        super().__init__()
        self.w = torch.tensor(w).permute(2, 0, 1)
        self.v = torch.tensor(v).permute(2, 0, 1)

    def forward(self, x):
        x = x.double()
        return ((self.w * x).sum(dim=(1, 2, 3)) + 0.5 * (self.v * x * x).sum(dim=(1, 2, 3)))[:, None]


def road_case(name, image, cam, w, v):
    """image [H, W, C] float32, cam [H, W] float32."""
    save(TOPIC, f"{name}_image", image)
    save(TOPIC, f"{name}_saliency", cam)
    save(TOPIC, f"{name}_w", w)
    save(TOPIC, f"{name}_v", v)
    model = Quadratic(w, v)
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    cams = cam[None]
    targets = [ClassifierOutputTarget(0)]
    quiet = NoisyLinearImputer(noise=0.0)
    for order, remover in (("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)):
        images, scores = [], []
        for p in PERCENTILES:
            metric = PerturbationConfidenceMetric(remover(p, quiet))
            score, vis = metric(tensor, cams, targets, model, return_visualization=True)
            images.append(vis[0].numpy().transpose(1, 2, 0))
            scores.append(score[0])
        save(TOPIC, f"{name}_{order}_images", np.stack(images).astype(np.float32))
        save(TOPIC, f"{name}_{order}_scores", np.array(scores, dtype=np.float64))
    original = model(tensor)[0, 0].item()

    # Noise on: the averages' distribution over torch's generator.
    morf_avg, lerf_avg = [], []
    for seed in range(NOISY_RUNS):
        torch.manual_seed(seed)
        morf_avg.append(float(ROADMostRelevantFirstAverage(PERCENTILES)(tensor, cams, targets, model)[0]))
        lerf_avg.append(float(ROADLeastRelevantFirstAverage(PERCENTILES)(tensor, cams, targets, model)[0]))
    return {
        "original_score": original,
        "noisy_morf_average_mean": float(np.mean(morf_avg)),
        "noisy_morf_average_std": float(np.std(morf_avg, ddof=1)),
        "noisy_lerf_average_mean": float(np.mean(lerf_avg)),
        "noisy_lerf_average_std": float(np.std(lerf_avg, ddof=1)),
        "noisy_runs": NOISY_RUNS,
    }


def captum_model(w, v, u):
    w, v, u = (torch.tensor(a) for a in (w, v, u))

    def forward(x):
        dims = tuple(range(1, x.dim()))
        xd = x.double()
        out = (w * xd).sum(dim=dims) + 0.5 * (v * xd * xd).sum(dim=dims) + torch.tanh((u * xd).sum(dim=dims))
        return out.to(x.dtype)

    return forward


def captum_case(dtype, suffix, x, w, v, u):
    save(TOPIC, f"captum_x{suffix}", x.astype(dtype))
    forward = captum_model(w, v, u)
    inp = torch.tensor(x.astype(dtype))[None].requires_grad_(True)
    attribution = Saliency(forward).attribute(inp, abs=False).detach()
    save(TOPIC, f"captum_attribution{suffix}", attribution[0].numpy())
    inp = inp.detach()
    out = {}

    # Infidelity with the documented perturbation, recorded.
    torch.manual_seed(5)
    record = {}

    def perturb_fn(inputs):
        noise = torch.tensor(np.random.normal(0, 0.003, inputs.shape)).to(inputs.dtype)
        record["noise"], record["perturbed"] = noise, inputs - noise
        return noise, inputs - noise

    for normalize in (False, True):
        np.random.seed(11)
        value = infidelity(forward, perturb_fn, inp, attribution, n_perturb_samples=10, normalize=normalize)
        tag = "normalized" if normalize else "plain"
        save(TOPIC, f"captum_infidelity_noise_{tag}{suffix}", record["noise"].numpy())
        save(TOPIC, f"captum_infidelity_perturbed_{tag}{suffix}", record["perturbed"].numpy())
        out[f"infidelity_{tag}"] = float(value[0])

    # Sensitivity with Captum's default perturbation, recorded.
    from captum.metrics._core.sensitivity import default_perturb_func

    def recording_perturb(inputs, radius):
        perturbed = default_perturb_func(inputs, radius)
        record["sens"] = perturbed[0] if isinstance(perturbed, tuple) else perturbed
        return perturbed

    def explain(inputs):
        return Saliency(forward).attribute(inputs, abs=False)

    torch.manual_seed(7)
    value = sensitivity_max(explain, inp, perturb_func=recording_perturb, perturb_radius=0.02, n_perturb_samples=10)
    save(TOPIC, f"captum_sensitivity_perturbed{suffix}", record["sens"].numpy())
    out["sensitivity_max"] = float(value[0])

    # The defaults' distributions (for the seeded defaults of the crate).
    def doc_perturb(inputs):
        noise = torch.tensor(np.random.normal(0, 0.003, inputs.shape)).to(inputs.dtype)
        return noise, inputs - noise

    infs, sens = [], []
    for seed in range(NOISY_RUNS):
        np.random.seed(seed)
        torch.manual_seed(seed)
        infs.append(float(infidelity(forward, doc_perturb, inp, attribution, n_perturb_samples=10)[0]))
        sens.append(float(sensitivity_max(explain, inp, n_perturb_samples=10)[0]))
    out["default_infidelity_mean"] = float(np.mean(infs))
    out["default_infidelity_std"] = float(np.std(infs, ddof=1))
    out["default_sensitivity_mean"] = float(np.mean(sens))
    out["default_sensitivity_std"] = float(np.std(sens, ddof=1))
    return out


def main():
    rng = np.random.default_rng(2022)
    meta = {
        "torch": torch.__version__,
        "captum": captum.__version__,
        "grad_cam": "1.5.7",
        "numpy": np.__version__,
        "percentiles": PERCENTILES,
    }
    assert os.path.exists(pytorch_grad_cam.__file__)

    # A textured image and a map with fine detail: many small holes.
    h, w_, c = 24, 20, 3
    i = np.arange(h)[:, None, None]
    j = np.arange(w_)[None, :, None]
    ch = np.arange(c)[None, None, :]
    image = (0.5 + 0.3 * np.sin(0.5 * i + 0.3 * j + ch) + 0.1 * rng.standard_normal((h, w_, c))).astype(np.float32)
    cam = (np.exp(-((i[..., 0] - 8.0) ** 2 + (j[..., 0] - 12.0) ** 2) / 30.0)
           + 0.2 * rng.random((h, w_))).astype(np.float32)
    w = rng.normal(0.0, 0.05, (h, w_, c))
    v = rng.normal(0.0, 0.05, (h, w_, c))
    meta["fine"] = road_case("fine", image, cam, w, v)

    # A larger image and a smooth map: large holes, slow for an iterative solver.
    h, w_ = 64, 64
    i = np.arange(h)[:, None, None]
    j = np.arange(w_)[None, :, None]
    image = (0.5 + 0.4 * np.cos(0.2 * i) * np.sin(0.15 * j + ch) + 0.05 * rng.standard_normal((h, w_, c))).astype(np.float32)
    cam = np.exp(-((i[..., 0] - 30.0) ** 2 + (j[..., 0] - 40.0) ** 2) / 400.0).astype(np.float32)
    w = rng.normal(0.0, 0.02, (h, w_, c))
    v = rng.normal(0.0, 0.02, (h, w_, c))
    meta["smooth"] = road_case("smooth", image, cam, w, v)

    # Captum: one input [6, 5, 3] in float64 and float32.
    x = rng.uniform(-1.0, 1.0, (6, 5, 3))
    w = rng.normal(0.0, 0.5, x.shape)
    v = rng.normal(0.0, 0.5, x.shape)
    u = rng.normal(0.0, 0.5, x.shape)
    save(TOPIC, "captum_w", w)
    save(TOPIC, "captum_v", v)
    save(TOPIC, "captum_u", u)
    meta["captum_f64"] = captum_case(np.float64, "_f64", x, w, v, u)
    meta["captum_f32"] = captum_case(np.float32, "_f32", x, w, v, u)

    # The figures the tests read, also as .npy (the tests parse no JSON).
    for case in ("fine", "smooth"):
        m = meta[case]
        save(TOPIC, f"{case}_stats", np.array([
            m["original_score"], m["noisy_morf_average_mean"], m["noisy_morf_average_std"],
            m["noisy_lerf_average_mean"], m["noisy_lerf_average_std"], m["noisy_runs"]]))
    for suffix in ("f64", "f32"):
        m = meta[f"captum_{suffix}"]
        save(TOPIC, f"captum_stats_{suffix}", np.array([
            m["infidelity_plain"], m["infidelity_normalized"], m["sensitivity_max"],
            m["default_infidelity_mean"], m["default_infidelity_std"],
            m["default_sensitivity_mean"], m["default_sensitivity_std"], NOISY_RUNS]))

    with open(os.path.join(HERE, "..", "..", "fixtures", TOPIC, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
