#!/usr/bin/env python3
"""Writes the ONNX fixtures under tests/fixtures/onnx/ from PyTorch and Captum.

    /path/to/venv/bin/python tests/reference/onnx/generate.py [NET ...]

See README.md beside this file for the environment and what each file is.
Everything is float32. Fixed seeds, one torch thread and deterministic
algorithms make a rerun reproduce the files on the same versions; CI never
runs this, the fixtures are committed.
"""
import collections
import json
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
import captum
from captum.attr import GuidedBackprop, LayerGradCam, Occlusion, Saliency
from onnx import helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import nets  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "onnx")

BATCH = 2
CLASSES = 10
INPUT_NAME = "input"
OUTPUT_NAME = "output"
IG_STEPS = 25
OCCLUSION = {"sliding_window_shapes": [3, 4, 4], "strides": [3, 2, 2], "baselines": 0.0,
             "perturbations_per_eval": 16}
MAX_MODEL_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 10 * 1024 * 1024

# The operators the crate's evaluator covers: every one must appear in some
# fixture graph. Gelu is written by exporters before opset 20 as its Erf
# formula, so Erf stands for it.
REQUIRED_OPS = [
    "Conv", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip",
    "HardSigmoid", "HardSwish", "Erf", "MaxPool", "AveragePool", "GlobalAveragePool", "Gemm",
    "MatMul", "Add", "Sub", "Mul", "Div", "Concat", "Flatten", "Reshape", "Transpose",
    "Squeeze", "Unsqueeze", "Shape", "Gather", "Slice", "Constant", "ConstantOfShape",
    "Softmax", "ReduceMean", "Pad", "Dropout", "Identity",
]


# The TorchScript exporter is chosen on purpose (see README.md).
warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")


def attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def const_values(graph):
    """Initializers and Constant node outputs by name, as numpy arrays."""
    vals = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            a = attrs(n)
            if "value" in a:
                vals[n.output[0]] = numpy_helper.to_array(a["value"])
    return vals


# Features beyond the op type that the evaluator must get right; the
# generator fails if any is in no graph.
FEATURES = {
    "Conv groups = channels (depthwise)":
        lambda n, a, c: n.op_type == "Conv" and a.get("group", 1) > 1
        and c.get(n.input[1]) is not None and c[n.input[1]].shape[1] == 1,
    "Conv groups = 2": lambda n, a, c: n.op_type == "Conv" and a.get("group", 1) == 2,
    "Conv dilations > 1": lambda n, a, c: n.op_type == "Conv" and max(a.get("dilations", [1])) > 1,
    "Conv strides 2": lambda n, a, c: n.op_type == "Conv" and max(a.get("strides", [1])) == 2,
    "Conv asymmetric pads":
        lambda n, a, c: n.op_type == "Conv" and "pads" in a
        and list(a["pads"][:2]) != list(a["pads"][2:]),
    "Conv auto_pad SAME_UPPER":
        lambda n, a, c: n.op_type == "Conv" and a.get("auto_pad") == b"SAME_UPPER",
    "Conv without bias": lambda n, a, c: n.op_type == "Conv" and len(n.input) == 2,
    "Conv 5x5": lambda n, a, c: n.op_type == "Conv" and list(a.get("kernel_shape", [])) == [5, 5],
    "MaxPool kernel 3 stride 2 pad 1":
        lambda n, a, c: n.op_type == "MaxPool" and list(a.get("kernel_shape")) == [3, 3]
        and list(a.get("strides")) == [2, 2] and list(a.get("pads", [0] * 4)) == [1] * 4,
    "MaxPool kernel 2 stride 2":
        lambda n, a, c: n.op_type == "MaxPool" and list(a.get("kernel_shape")) == [2, 2]
        and list(a.get("strides")) == [2, 2],
    "AveragePool kernel 2 stride 2":
        lambda n, a, c: n.op_type == "AveragePool" and list(a.get("kernel_shape")) == [2, 2],
    "Pad mode constant": lambda n, a, c: n.op_type == "Pad" and a.get("mode", b"constant") == b"constant",
    "Pad mode reflect": lambda n, a, c: n.op_type == "Pad" and a.get("mode") == b"reflect",
    "Slice with steps": lambda n, a, c: n.op_type == "Slice" and len(n.input) == 5,
    "Squeeze axes as input (opset 13+)": lambda n, a, c: n.op_type == "Squeeze" and len(n.input) == 2,
    "Unsqueeze axes as input (opset 13+)": lambda n, a, c: n.op_type == "Unsqueeze" and len(n.input) == 2,
    "ReduceMean axes attribute (opset < 18)":
        lambda n, a, c: n.op_type == "ReduceMean" and "axes" in a,
    "Gemm transB = 1": lambda n, a, c: n.op_type == "Gemm" and a.get("transB", 0) == 1,
    "Clip min/max as inputs": lambda n, a, c: n.op_type == "Clip" and len(n.input) == 3,
    "Softmax axis -1 on 3-D": lambda n, a, c: n.op_type == "Softmax" and a.get("axis") == -1,
}


def seeded(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    return torch.Generator().manual_seed(seed)


def build(name):
    ctor, side, opset, seed = nets.NETS[name]
    gen = seeded(seed)
    model = ctor(CLASSES)
    # He-normal weights keep the activations' scale through the layers
    # (PyTorch's default init shrinks it): the outputs then depend strongly
    # on the input, so occlusion differences and gradients stand well above
    # float32 rounding. Random running statistics and affine parameters make
    # the folded and unfolded BatchNorms no identities.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(c, generator=gen) * 0.4 + 0.8)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
    model.eval()
    return model, side, opset, seed


def make_input(side, seed):
    """Two [0, 1] images with a few smooth blobs and mild noise, so that
    Grad-CAM and Occlusion maps have structure."""
    rng = np.random.default_rng(1000 + seed)  # seed + 100 k for the k-th redraw
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64) / side
    x = np.empty((BATCH, 3, side, side))
    for i in range(BATCH):
        img = np.full((3, side, side), 0.3) + 0.05 * rng.standard_normal((3, side, side))
        for _ in range(3):
            cy, cx = rng.uniform(0.2, 0.8, 2)
            r = rng.uniform(0.08, 0.2)
            colour = rng.uniform(-0.3, 0.6, 3)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            img += colour[:, None, None] * blob
        x[i] = img
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def export(model, x, opset, path):
    # The TorchScript exporter (dynamo=False) writes the classic graphs that
    # most published .onnx classifiers have: folded Conv+BN, a dynamic batch
    # axis with its shape arithmetic (Shape, Gather, Unsqueeze, Concat).
    torch.onnx.export(
        model, (x,), path, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        do_constant_folding=True)
    return onnx.load(path)


def scope_nodes(graph, path):
    """Nodes written for module `path`: the TorchScript exporter names them
    /a/b/Op for module a.b, and /a/a.0/Op for a Sequential's child a.0."""
    parts = path.split(".")
    comps = [f"{parts[i - 1]}.{p}" if p.isdigit() and i else p for i, p in enumerate(parts)]
    pre = "/" + "/".join(comps) + "/"
    return [n for n in graph.node if n.name.startswith(pre)]


def producer(graph, tensor):
    for n in graph.node:
        if tensor in n.output:
            return n
    return None


def prune(graph):
    """Removes nodes whose outputs nothing reads (the pads arithmetic of a
    folded Pad)."""
    outs = {o.name for o in graph.output}
    while True:
        read = {t for n in graph.node for t in n.input} | outs
        dead = [n for n in graph.node if not any(o in read for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def fold_same_pad(model_proto, x, path, mode):
    """Folds the Pad written by the TfSamePad module at `path` into the Conv
    that reads it, as tf2onnx writes TensorFlow's SAME convs: `auto_pad`
    SAME_UPPER, or explicit asymmetric `pads`."""
    graph = model_proto.graph
    pads = [n for n in scope_nodes(graph, path) if n.op_type == "Pad"]
    assert len(pads) == 1, (path, [n.name for n in scope_nodes(graph, path)])
    pad = pads[0]
    # The exporter computes the pads (ConstantOfShape, Reshape, Slice, ...).
    amounts = ort_run(model_proto, x, [(pad.input[1], onnx.TensorProto.INT64)])[pad.input[1]]
    assert list(amounts) == [0, 0, 0, 0, 0, 0, 1, 1], amounts
    assert attrs(pad).get("mode", b"constant") == b"constant"
    assert len(pad.input) < 3 or pad.input[2] == ""
    readers = [n for n in graph.node if pad.output[0] in n.input]
    assert len(readers) == 1 and readers[0].op_type == "Conv", [n.op_type for n in readers]
    conv = readers[0]
    a = attrs(conv)
    assert list(a.get("pads", [0] * 4)) == [0] * 4
    keep = [x for x in conv.attribute if x.name not in ("pads", "auto_pad")]
    del conv.attribute[:]
    conv.attribute.extend(keep)
    if mode == "auto_pad":
        conv.attribute.append(helper.make_attribute("auto_pad", "SAME_UPPER"))
    else:
        conv.attribute.append(helper.make_attribute("pads", [0, 0, 1, 1]))
    conv.input[0] = pad.input[0]
    graph.node.remove(pad)
    prune(graph)
    return f"{pad.name} folded into {conv.name} as {'auto_pad SAME_UPPER' if mode == 'auto_pad' else 'pads [0, 0, 1, 1]'}"


def insert_after(graph, tensor, op_type, name):
    """Puts a one-input identity-valued node (Dropout in inference, Identity)
    on `tensor`: every reader then reads the new node's output."""
    out = f"{name}_output_0"
    for n in graph.node:
        for i, t in enumerate(n.input):
            if t == tensor:
                n.input[i] = out
    node = helper.make_node(op_type, [tensor], [out], name=name)
    prod = producer(graph, tensor)
    idx = list(graph.node).index(prod) + 1 if prod is not None else 0
    graph.node.insert(idx, node)
    return f"{op_type} {name} inserted on {tensor}"


def edit_graph(name, model_proto, x):
    """Graph edits that the exporter cannot produce itself; each keeps the
    function the same (checked against PyTorch by onnxruntime below)."""
    g = model_proto.graph
    edits = []
    if name == "vgg":
        edits.append(fold_same_pad(model_proto, x, "features.8", "auto_pad"))
        # The exporter drops Dropout in eval mode; a Keras or older export keeps
        # it, as an inference Dropout (no training_mode input: identity).
        flat = [n for n in g.node if n.op_type == "Flatten"]
        assert len(flat) == 1
        edits.append(insert_after(g, flat[0].output[0], "Identity", "/flatten_identity"))
        relu = [n for n in scope_nodes(g, "classifier.1") if n.op_type == "Relu"]
        assert len(relu) == 1
        edits.append(insert_after(g, relu[0].output[0], "Dropout", "/classifier/classifier.2/Dropout"))
    elif name == "efficientnet":
        edits.append(fold_same_pad(model_proto, x, "stem.0", "pads"))
    return edits


def ort_run(model_proto, x, extra_outputs=()):
    m = onnx.ModelProto()
    m.CopyFrom(model_proto)
    for t in extra_outputs:
        t, ty = t if isinstance(t, tuple) else (t, onnx.TensorProto.FLOAT)
        m.graph.output.append(helper.make_tensor_value_info(t, ty, None))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [OUTPUT_NAME, *(t[0] if isinstance(t, tuple) else t for t in extra_outputs)]
    return dict(zip(names, sess.run(names, {INPUT_NAME: x})))


def get_module(model, path):
    m = model
    for p in path.split("."):
        m = getattr(m, p) if not p.isdigit() else m[int(p)]
    return m


def pick_classes(logits):
    """Different classes for the two images (per-image targets must be
    honoured): the first image's top class, the second image's best class
    other than that."""
    c0 = int(np.argmax(logits[0]))
    order = np.argsort(-logits[1], kind="stable")
    c1 = int(order[0] if order[0] != c0 else order[1])
    return [c0, c1]


def input_gradient(model, x, classes):
    xt = torch.from_numpy(x).requires_grad_(True)
    out = model(xt)
    sel = out[torch.arange(x.shape[0]), torch.tensor(classes)]
    (g,) = torch.autograd.grad(sel.sum(), xt)
    return g.numpy()


def ig_pair_rule(model, x, classes, steps=IG_STEPS):
    """PAIR saliency 0.2.1's IntegratedGradients.GetMask with a zero baseline
    (so baseline + alpha (x - baseline) is alpha x):
    alphas = linspace(0, 1, steps), the mean of the input gradients at
    baseline + alpha (x - baseline), times (x - baseline). Path points are
    formed in float64 and fed as float32; gradients are summed in float64."""
    baseline = np.zeros_like(x, dtype=np.float64)
    diff = x.astype(np.float64) - baseline
    total = np.zeros_like(diff)
    for _, pts in path_points(x, steps):
        total += input_gradient(model, pts, classes).astype(np.float64)
    return (total * diff / steps).astype(np.float32)


def path_points(x, steps=IG_STEPS):
    return [(float(a), (a * x.astype(np.float64)).astype(np.float32))
            for a in np.linspace(0, 1, steps)]


def kink_sensitivity(name, x, classes, nudge_alpha0):
    """How far a rounding-sized nudge moves the input gradient at x and the
    IG result: where an activation sits on a kink (ReLU, Clip, HardSwish, ...)
    or a max-pool window nearly ties, two correct float32 evaluators can
    disagree by far more than 1e-4, so the input is redrawn until the
    gradient moves by less than 1e-5 and IG by less than 2e-5. Checked in float64 with two random
    nudges of 3e-7 max|x| (a few float32 ulps) of every point. Relative to
    the maximum magnitude; returns (at x, on IG)."""
    m64 = build(name)[0].double()
    rng = np.random.default_rng(7)
    nudge = 3e-7 * float(np.abs(x).max())
    x64 = x.astype(np.float64)
    g = input_gradient(m64, x64, classes)
    grads = [input_gradient(m64, p.astype(np.float64), classes) for _, p in path_points(x)]
    ig = np.sum(grads, axis=0) * x64 / IG_STEPS
    at_x = at_ig = 0.0
    for _ in range(2):
        h = input_gradient(m64, x64 + nudge * rng.standard_normal(x.shape), classes)
        at_x = max(at_x, float(np.abs(h - g).max() / np.abs(g).max()))
        moved = [gr if (a == 0.0 and not nudge_alpha0) else
                 input_gradient(m64, p.astype(np.float64) + nudge * rng.standard_normal(x.shape),
                                classes)
                 for (a, p), gr in zip(path_points(x), grads)]
        ig2 = np.sum(moved, axis=0) * x64 / IG_STEPS
        at_ig = max(at_ig, float(np.abs(ig2 - ig).max() / np.abs(ig).max()))
    return at_x, at_ig


def maxpool_ties(model, x):
    """Max-pool windows (over all MaxPool2d modules) whose nonzero maximum
    is attained more than once when the model runs on x. (Ties at zero come
    after a ReLU whose inputs are negative: no gradient flows either way.)"""
    count = [0]

    def hook(m, inp, out):
        t = torch.nn.functional.pad(inp[0], [m.padding] * 4, value=float("-inf"))
        w = t.unfold(2, m.kernel_size, m.stride).unfold(3, m.kernel_size, m.stride)
        w = w.reshape(*w.shape[:4], -1)
        top = w.max(-1, keepdim=True).values
        count[0] += int((((w == top).sum(-1) > 1) & (top[..., 0] != 0)).sum())

    hooks = [m.register_forward_hook(hook) for m in model.modules()
             if isinstance(m, torch.nn.MaxPool2d)]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    return count[0]


def has_maxpool(model):
    return any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())


def relu_modules(model):
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU)]


def save(d, name, arr):
    np.save(os.path.join(d, name + ".npy"), np.ascontiguousarray(arr, dtype=np.float32),
            allow_pickle=False)


def versions():
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "captum": captum.__version__, "onnx": onnx.__version__,
            "onnxruntime": ort.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0]}


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def generate_net(name):
    model, side, opset, seed = build(name)
    # A constant image (alpha = 0 on the IG path) ties every interior
    # max-pool window; PyTorch sends the gradient to the window's first
    # maximal element in row-major order. That case is kept and recorded.
    ties = has_maxpool(model)
    for attempt in range(20):
        x = make_input(side, seed + 100 * attempt)
        with torch.no_grad():
            classes = pick_classes(model(torch.from_numpy(x)).numpy())
        sens = kink_sensitivity(name, x, classes, nudge_alpha0=not ties)
        if sens[0] < 1e-5 and sens[1] < 2e-5:
            break
        print(f"{name}: input {attempt} redrawn, nudged gradient and IG move by {sens}")
    else:
        sys.exit(f"{name}: no input without kinks found")
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    proto = export(model, torch.from_numpy(x), opset, path)
    edits = edit_graph(name, proto, x)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)
    assert os.path.getsize(path) < MAX_MODEL_BYTES, (name, os.path.getsize(path))
    g = proto.graph

    # The Grad-CAM layer: the last node of the cam module's scope.
    scope = scope_nodes(g, model.cam)
    assert scope, (name, model.cam)
    layer_node = scope[-1]
    layer = layer_node.output[0]

    cam_module = get_module(model, model.cam)
    acts = {}
    hook = cam_module.register_forward_hook(lambda m, i, o: acts.__setitem__("v", o.detach()))
    with torch.no_grad():
        logits_torch = model(torch.from_numpy(x)).numpy()
    hook.remove()
    ran = ort_run(proto, x, [layer])
    logits_ort = ran[OUTPUT_NAME]
    layer_ort = ran[layer]
    err_logits = rel_err(logits_ort, logits_torch)
    err_layer = rel_err(layer_ort, acts["v"].numpy())
    assert err_logits < 1e-5, (name, err_logits)
    assert err_layer < 1e-5, (name, err_layer)
    assert layer_ort.ndim == 4

    # Every ONNX Relu comes from one nn.ReLU module and vice versa, so
    # Captum's GuidedBackprop and a per-node guided ReLU agree.
    relus = relu_modules(model)
    relu_nodes = [n for n in g.node if n.op_type == "Relu"]
    assert len(relus) == len(relu_nodes), (name, relus, [n.name for n in relu_nodes])

    assert classes == pick_classes(logits_torch)
    targets = list(classes)
    xt = torch.from_numpy(x)

    grad = input_gradient(model, x, classes)
    sal = Saliency(model).attribute(xt.clone().requires_grad_(True), target=targets, abs=False)
    cam = LayerGradCam(model, cam_module).attribute(
        xt, target=targets, relu_attributions=False, attribute_to_layer_input=False)
    occ = Occlusion(model).attribute(
        xt, sliding_window_shapes=tuple(OCCLUSION["sliding_window_shapes"]),
        strides=tuple(OCCLUSION["strides"]), baselines=OCCLUSION["baselines"], target=targets,
        perturbations_per_eval=OCCLUSION["perturbations_per_eval"])
    ig = ig_pair_rule(model, x, classes)

    save(d, "input", x)
    save(d, "logits_torch", logits_torch)
    save(d, "logits_ort", logits_ort)
    save(d, "grad_input", grad)
    save(d, "saliency", sal.detach().numpy())
    save(d, "gradcam", cam.detach().numpy())
    save(d, "occlusion", occ.detach().numpy())
    save(d, "ig_pair_rule", ig)
    captum_args = {
        "Saliency": {"file": "saliency.npy", "target": targets, "abs": False},
        "LayerGradCam": {"file": "gradcam.npy", "layer_module": model.cam, "target": targets,
                         "relu_attributions": False, "attribute_to_layer_input": False,
                         "attr_dim_summation": True},
        "Occlusion": {"file": "occlusion.npy", "target": targets, **OCCLUSION},
    }
    if relus:
        gb = GuidedBackprop(model).attribute(xt.clone().requires_grad_(True), target=targets)
        save(d, "guided_backprop", gb.detach().numpy())
        captum_args["GuidedBackprop"] = {"file": "guided_backprop.npy", "target": targets,
                                         "relu_modules": relus}
    else:
        gbp = os.path.join(d, "guided_backprop.npy")
        if os.path.exists(gbp):
            os.remove(gbp)
        captum_args["GuidedBackprop"] = None

    ops = collections.Counter(n.op_type for n in g.node)
    meta = {
        "net": name,
        "description": " ".join(type(model).__doc__.split()),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "output_is": "probabilities (Softmax)" if name == "conv_attention" else "logits",
        "input_shape": list(x.shape),
        "layout": "NCHW",
        "dtype": "float32",
        "normalization": {"in_graph": True, "mean": list(nets.MEAN), "std": list(nets.STD),
                          "note": "(x - mean) / std is the graph's first Sub and Div; "
                                  "input.npy is in [0, 1] and needs no further normalisation"},
        "classes": classes,
        "num_classes": CLASSES,
        "layer": layer,
        "layer_node": layer_node.name,
        "layer_op": layer_node.op_type,
        "layer_shape": list(layer_ort.shape),
        "relu_nodes": len(relu_nodes),
        "opset": opset,
        "ops": dict(sorted(ops.items())),
        "graph_edits": edits,
        "seed": seed,
        "input_attempt": attempt,
        "kink_sensitivity": {"grad_at_x": sens[0], "ig": sens[1],
                             "note": "largest relative change of grad_input and ig_pair_rule "
                                     "under nudges of 3e-7 max|x| (float64)"},
        "maxpool_tied_windows": {"at_x": maxpool_ties(model, x),
                                 "ig_alpha0": maxpool_ties(model, np.zeros_like(x))},
        "maxpool_tie_rule": "PyTorch's max-pool backward sends the gradient to the first maximal "
                            "element of each window in row-major order; at alpha = 0 the image "
                            "is constant and interior windows tie, so ig_pair_rule.npy follows "
                            "that rule" if ties else None,
        "checks": {"logits_ort_vs_torch_rel": err_logits, "layer_ort_vs_torch_rel": err_layer},
        "versions": versions(),
        "grad_input": {"file": "grad_input.npy",
                       "definition": "d output[i, classes[i]] / d input[i], NCHW"},
        "ig_pair_rule": {"file": "ig_pair_rule.npy", "steps": IG_STEPS, "baseline": "zeros",
                         "rule": "PAIR saliency 0.2.1 IntegratedGradients.GetMask: mean over "
                                 "alpha in linspace(0, 1, steps) of the input gradient at "
                                 "baseline + alpha (x - baseline), times (x - baseline)"},
        "captum": captum_args,
    }
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"{name}: opset {opset}, {os.path.getsize(path)} B model, classes {classes}, "
          f"layer {layer} {list(layer_ort.shape)}, ort vs torch {err_logits:.1e}")
    return name, g, opset


GRADER_SIDE = 48
GRADER_SEED = 11
GRADER_TRAIN = 1200
GRADER_TEST = 200
GRADER_EPOCHS = 12


def soft_disk(d, r, edge):
    return 1.0 / (1.0 + np.exp((d - r) / edge))


def embryo(rng, size, good):
    """One generated blastocyst, H x W x 3 float32, about [-1, 1]: a numpy
    transcription of examples/blastocyst/phantom.rs (same anatomy and value
    ranges, its own random stream), so the grader learns what the example's
    embryos show: good = a packed mass of many bright cells; poor = a few
    loose cells, or a packed mass with dark cells."""
    s = float(size)
    cy, cx = s / 2 + rng.uniform(-0.04, 0.04) * s, s / 2 + rng.uniform(-0.04, 0.04) * s
    r_zona = s * rng.uniform(0.36, 0.41)
    zona_w = s * 0.035
    r_inner = r_zona - zona_w
    angle = rng.uniform(0, 2 * np.pi)
    icm_r = s * rng.uniform(0.15, 0.19)
    degenerating = (not good) and rng.random() < 0.5
    if not good and not degenerating:
        n_cells, spread = 8 + int(rng.integers(0, 5)), 1.0
    else:
        n_cells, spread = 45 + int(rng.integers(0, 10)), 0.75
    icm_dist = r_inner - icm_r * 0.85
    iy, ix = cy + icm_dist * np.sin(angle), cx + icm_dist * np.cos(angle)
    a = rng.uniform(0, 2 * np.pi, n_cells)
    d = icm_r * spread * np.sqrt(rng.uniform(0, 1, n_cells))
    dark = degenerating & (rng.random(n_cells) < 0.2)
    pr = s * rng.uniform(0.025, 0.04, n_cells)
    tone = np.where(dark, -0.3, 0.75)
    py, px = iy + d * np.sin(a), ix + d * np.cos(a)
    n_te = 18 + int(rng.integers(0, 6))
    te_phase = rng.uniform(0, 2 * np.pi)
    illum = rng.uniform(-0.25, 0.25, 2)
    cavity = rng.uniform(0.05, 0.25)
    zona = rng.uniform(0.25, 0.85)
    te_contrast = rng.uniform(0.1, 0.45)

    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dist = np.hypot(y - cy, x - cx)
    theta = np.arctan2(y - cy, x - cx)
    v = -0.1 + illum[0] * (y / s - 0.5) + illum[1] * (x / s - 0.5)
    band = (dist - (r_zona - zona_w / 2)) / (zona_w / 2)
    v += zona * np.exp(-band * band * 2) - 0.45 * zona * np.exp(-(np.abs(band) - 1.2) ** 2 * 6)
    inside = soft_disk(dist, r_inner, 1.0)
    v -= cavity * inside
    te = np.exp(-(dist - (r_inner - s * 0.02)) ** 2 / (2 * (s * 0.012) ** 2))
    v += te_contrast * te * (0.6 + 0.4 * np.abs(np.sin(n_te * theta + te_phase)))
    dd = np.hypot(y[None] - py[:, None, None], x[None] - px[:, None, None])
    body = soft_disk(dd, pr[:, None, None], 0.8)
    deepest = np.argmax(body, axis=0)
    shade = np.take_along_axis(tone[:, None, None] * body, deepest[None], 0)[0]
    membranes = (np.exp(-(dd - pr[:, None, None]) ** 2) * np.maximum(body, 0.3)).max(0)
    v += (shade - 0.35 * membranes) * inside
    v += rng.normal(0, 0.06, (size, size))
    return (v[..., None] + np.array([0.03, 0.0, -0.03])).astype(np.float32)


def embryos(rng, n):
    """n embryos, alternating good (label 0) and poor (label 1), NCHW."""
    labels = np.arange(n) % 2
    x = np.stack([embryo(rng, GRADER_SIDE, good=(k == 0)) for k in labels])
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), labels


def generate_grader():
    """tests/fixtures/onnx/grader/: a small grader for the blastocyst
    example's `--model`, briefly trained on generated embryos. No references
    beside it: it is an input for the example, not a parity fixture."""
    torch.manual_seed(GRADER_SEED)
    rng = np.random.default_rng(GRADER_SEED)
    model = nets.Grader()
    x_train, y_train = embryos(rng, GRADER_TRAIN)
    x_test, y_test = embryos(rng, GRADER_TEST)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    opt = torch.optim.Adam(model.parameters(), lr=4e-3)
    gen = torch.Generator().manual_seed(GRADER_SEED)
    model.train()
    for _ in range(GRADER_EPOCHS):
        order = torch.randperm(GRADER_TRAIN, generator=gen)
        for b in range(0, GRADER_TRAIN, 32):
            idx = order[b:b + 32]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x_test)).numpy()
    accuracy = float((logits.argmax(1) == y_test).mean())
    d = os.path.join(OUT, "grader")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    proto = export(model, torch.from_numpy(x_test[:1]), 17, path)
    onnx.checker.check_model(proto, full_check=True)
    size = os.path.getsize(path)
    assert size < 500 * 1024, size
    logits_ort = ort_run(proto, x_test)[OUTPUT_NAME]
    err = rel_err(logits_ort, logits)
    assert err < 1e-5, err
    layer_node = scope_nodes(proto.graph, model.cam)[-1]
    meta = {
        "net": "grader",
        "description": " ".join(type(model).__doc__.split()),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "output_is": "logits",
        "input_shape": ["batch", 3, GRADER_SIDE, GRADER_SIDE],
        "layout": "NCHW",
        "dtype": "float32",
        "input_values": "the blastocyst example's generated embryos as they are (H x W x 3, "
                        "about [-1, 1]), no normalisation",
        "classes": {"0": "good", "1": "poor"},
        "layer": layer_node.output[0],
        "layer_node": layer_node.name,
        "training": {"embryos": GRADER_TRAIN, "epochs": GRADER_EPOCHS, "optimizer": "Adam 4e-3",
                     "batch": 32, "seed": GRADER_SEED,
                     "data": "generate.py's numpy transcription of examples/blastocyst/phantom.rs"},
        "held_out_accuracy": accuracy,
        "held_out_embryos": GRADER_TEST,
        "checks": {"logits_ort_vs_torch_rel": err},
        "versions": versions(),
    }
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"grader: {size} B model, held-out accuracy {accuracy:.3f}, ort vs torch {err:.1e}")


def ops_table(graphs):
    """OPS.md: which net uses which operator and feature, from the graphs."""
    names = [n for n, _, _ in graphs]
    used = {n: collections.Counter(x.op_type for x in g.node) for n, g, _ in graphs}
    feats = {}
    for n, g, _ in graphs:
        c = const_values(g)
        feats[n] = {f for f, test in FEATURES.items() if any(test(x, attrs(x), c) for x in g.node)}
    all_ops = sorted(set().union(*used.values()) | set(REQUIRED_OPS))
    missing = [op for op in REQUIRED_OPS if not any(used[n][op] for n in names)]
    missing_f = [f for f in FEATURES if not any(f in feats[n] for n in names)]
    extra = [op for op in all_ops if op not in REQUIRED_OPS]
    lines = [
        "# Operators in the ONNX fixtures",
        "",
        "Written by tests/reference/onnx/generate.py from the exported graphs (node counts).",
        "Gelu appears as its Erf formula (Div, Erf, Add, Mul), as exporters write it before opset 20.",
        "",
        "| op | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for op in all_ops:
        cells = [str(used[n][op]) if used[n][op] else "" for n in names]
        mark = "" if op in REQUIRED_OPS else " (extra)"
        lines.append(f"| {op}{mark} | " + " | ".join(cells) + " |")
    lines += ["", "| feature | " + " | ".join(names) + " |",
              "| --- | " + " | ".join("---" for _ in names) + " |"]
    for f in FEATURES:
        lines.append(f"| {f} | " + " | ".join("x" if f in feats[n] else "" for n in names) + " |")
    lines += ["", "Opsets: " + ", ".join(f"{n} {o}" for n, _, o in graphs) + "."]
    if extra:
        lines += ["", "Operators outside the required list: " + ", ".join(extra) + "."]
    with open(os.path.join(OUT, "OPS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if missing or missing_f:
        sys.exit(f"not covered by any fixture: ops {missing}, features {missing_f}")


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    wanted = sys.argv[1:] or [*nets.NETS, "grader"]
    unknown = [n for n in wanted if n not in nets.NETS and n != "grader"]
    if unknown:
        sys.exit(f"unknown nets {unknown}; known: {[*nets.NETS, 'grader']}")
    print(", ".join(f"{k} {v}" for k, v in versions().items()))
    graphs = [generate_net(n) for n in wanted if n != "grader"]
    if "grader" in wanted:
        generate_grader()
    if len(graphs) == len(nets.NETS):
        ops_table(graphs)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"fixtures: {total} B")
    if total > MAX_TOTAL_BYTES:
        sys.exit(f"fixtures are {total} B, over {MAX_TOTAL_BYTES}")


if __name__ == "__main__":
    main()
