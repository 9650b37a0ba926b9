"""Captum 0.9 references for the integration rules, convergence deltas,
NoiseTunnel variants and several-target calls (tests/captum_ig.rs).

A small fixed-weight PyTorch classifier (Conv, Tanh, MaxPool, Conv, Relu,
GlobalAveragePool, Gemm; smooth enough that the rules differ well above
float32 rounding) is exported to ONNX; the crate evaluates that file through
its `onnx` feature, so both sides explain the same function. Written to
tests/fixtures/captum_ig/:

- model.onnx, x.npy ([1, 3, 12, 12], in [0, 1]), baseline.npy (a random
  baseline, so a crate that ignored it would fail), f.npy (the logits of x
  and baseline, [2, 3]);
- ig_<method>.npy: IntegratedGradients(model).attribute(x, baselines,
  target=TARGET, n_steps=STEPS, method=<method>, return_convergence_delta=True)
  for each of Captum's five methods, and ig_<method>_delta in meta.json;
- ig_targets.npy ([3, 1, 3, 12, 12]): riemann_trapezoid IG for every class;
- nt_<type>.npy and nt_<type>_noisy.npy: NoiseTunnel(Saliency(model))
  .attribute(x, nt_type=<type>, nt_samples=NT_SAMPLES, stdevs=NT_STDEV,
  target=TARGET, abs=False), and the noisy inputs Captum drew (recorded by a
  forward pre-hook), so the test can feed the crate the same noise.

Run: /work/venv-torch/bin/python tests/reference/captum_ig/generate.py
"""
import json
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import captum
import onnx
import onnxruntime as ort
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "captum_ig")
STEPS = 6
TARGET = 1
NT_SAMPLES = 6
NT_STDEV = 0.2
METHODS = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.tanh = nn.Tanh()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.pool(self.tanh(self.conv1(x)))
        x = self.gap(self.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def save(name, arr):
    np.save(os.path.join(OUT, name + ".npy"), np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(0)
    model = Net()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, generator=gen)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    model.eval()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (1, 3, 12, 12)).astype(np.float32)
    baseline = rng.uniform(0.0, 0.3, (1, 3, 12, 12)).astype(np.float32)
    xt, bt = torch.from_numpy(x), torch.from_numpy(baseline)

    path = os.path.join(OUT, "model.onnx")
    torch.onnx.export(model, (xt,), path, dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    both = np.concatenate([x, baseline])
    f_ort = sess.run(None, {"input": both})[0]
    with torch.no_grad():
        f = model(torch.from_numpy(both)).numpy()
    assert np.max(np.abs(f - f_ort)) < 1e-5, "onnxruntime disagrees with PyTorch"
    save("x", x)
    save("baseline", baseline)
    save("f", f)

    meta = {"steps": STEPS, "target": TARGET, "nt_samples": NT_SAMPLES, "nt_stdev": NT_STDEV,
            "versions": {"torch": torch.__version__, "captum": captum.__version__, "onnx": onnx.__version__,
                         "onnxruntime": ort.__version__, "numpy": np.__version__,
                         "python": sys.version.split()[0]}}
    ig = IntegratedGradients(model)
    for method in METHODS:
        attr, delta = ig.attribute(xt, baselines=bt, target=TARGET, n_steps=STEPS, method=method,
                                   return_convergence_delta=True)
        save("ig_" + method, attr.detach().numpy())
        meta["ig_" + method + "_delta"] = float(delta.item())
    targets = [ig.attribute(xt, baselines=bt, target=t, n_steps=STEPS, method="riemann_trapezoid")
               .detach().numpy() for t in range(3)]
    save("ig_targets", np.stack(targets))

    recorded = []
    hook = model.register_forward_pre_hook(lambda m, inp: recorded.append(inp[0].detach().clone()))
    nt = NoiseTunnel(Saliency(model))
    for nt_type in ["smoothgrad", "smoothgrad_sq", "vargrad"]:
        recorded.clear()
        torch.manual_seed(1)
        attr = nt.attribute(xt, nt_type=nt_type, nt_samples=NT_SAMPLES, stdevs=NT_STDEV, target=TARGET,
                            abs=False)
        assert len(recorded) == 1 and recorded[0].shape[0] == NT_SAMPLES, [r.shape for r in recorded]
        save("nt_" + nt_type, attr.detach().numpy())
        save("nt_" + nt_type + "_noisy", recorded[0].numpy())
    hook.remove()

    with open(os.path.join(OUT, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    main()
