#!/usr/bin/env python3
"""Times forward + backward (the input gradient of one class) of a full-size
torchvision ResNet-18 in PyTorch and, optionally, in the crate, in one run.

    /path/to/venv/bin/python tests/reference/onnx/time_resnet18.py \\
        [--images 25] [--size 224] [--threads 2] [--repeats 3] \\
        [--crate-cmd "target/release/examples/NAME --model {model} --input {input}"]

The network has random weights (eval mode) and is exported to a temporary
folder that is deleted afterwards (never committed), with the batch as
input.npy (float32, NCHW) beside it. PyTorch's figure is the median of
`--repeats` timed runs after one warm-up run, with `--threads` torch threads.

`--crate-cmd` is split like a shell line; {model}, {input}, {images},
{size}, {class} and {threads} are replaced (the model path is appended when
{model} is absent). It runs once with RAYON_NUM_THREADS set to `--threads`;
its time is the last line of its output of the form `seconds: <float>`
(its own median of forward + backward), else the wall time of the whole
command, which then includes loading and start-up, and says so.
"""
import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torchvision


# The TorchScript exporter is chosen on purpose (see README.md).
warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=25)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--class", dest="cls", type=int, default=0, help="the class whose logit is differentiated")
    p.add_argument("--crate-cmd", default=None)
    return p.parse_args()


def torch_seconds(model, x, cls, repeats):
    def once():
        xi = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        out = model(xi)
        # Gradient with respect to the input only, as Captum asks for it:
        # no weight gradients are computed.
        (g,) = torch.autograd.grad(out[:, cls].sum(), xi)
        t = time.perf_counter() - t0
        assert g.shape == x.shape
        return t
    once()  # warm-up: allocator and kernel selection
    times = [once() for _ in range(repeats)]
    return statistics.median(times), times


def run_crate(cmd, values, threads):
    args = shlex.split(cmd)
    if not any("{model}" in a for a in args):
        args.append("{model}")
    args = [a.format(**values) for a in args]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    print("crate:", " ".join(shlex.quote(a) for a in args), flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        sys.exit(f"crate command failed with exit code {done.returncode}")
    found = re.findall(r"^\s*seconds:\s*([0-9.eE+-]+)\s*$", done.stdout, re.M)
    if found:
        return float(found[-1]), "its own median of forward + backward"
    return wall, "wall time of the whole command, loading included"


def main():
    a = parse()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(a.images, 3, a.size, a.size, generator=torch.Generator().manual_seed(1))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{torch.get_num_threads()} threads, {a.images} images {a.size} x {a.size}, class {a.cls}")
    with tempfile.TemporaryDirectory(prefix="resnet18_onnx_") as tmp:
        model_path = os.path.join(tmp, "resnet18.onnx")
        input_path = os.path.join(tmp, "input.npy")
        torch.onnx.export(model, (x[:1],), model_path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        np.save(input_path, x.numpy())
        print(f"exported {model_path} ({os.path.getsize(model_path) / 1e6:.1f} MB)")
        med, times = torch_seconds(model, x, a.cls, a.repeats)
        print(f"PyTorch forward + backward: {med:.3f} s (median of {', '.join(f'{t:.3f}' for t in times)})")
        if a.crate_cmd:
            values = {"model": model_path, "input": input_path, "images": a.images,
                      "size": a.size, "class": a.cls, "threads": a.threads}
            secs, what = run_crate(a.crate_cmd, values, a.threads)
            print(f"crate forward + backward: {secs:.3f} s ({what})")
            print(f"PyTorch {med:.3f} s, crate {secs:.3f} s, crate / PyTorch {secs / med:.2f}")


if __name__ == "__main__":
    main()
