"""Fixtures for XRAI, its Felzenszwalb segmentation and the summation kernel.

- sum_*: numpy.sum / numpy.mean of 1-D arrays (pairwise summation order).
- small_*: XRAI on a 40 x 48 image with the reference's own segments and a
  random base attribution: full (area threshold 1.0 and 0.4) and fast.
  Segments are stored bit-packed (numpy.packbits over each flattened mask).
- ig_*: XRAI with integrated gradients (default min/max baselines) of a small
  tanh network, on fixed rectangular segments.
- felz_*: scikit-image's Felzenszwalb kernel on unsmoothed (sigma 0) images.
- labels_*: the reference segmentation pipeline's label images (normalise,
  resize to 224, Felzenszwalb at six scales, resize back) for the workload
  image and two generated images; the images are formulas the Rust tests
  rebuild.
- e2e_heatmap: XRAI (full, defaults, batch 25) of the workload image with a
  nonlinear model, for the correlation check.
"""
import numpy as np
import saliency.core as s
from saliency.core import xrai as X
from skimage.segmentation import felzenszwalb
from skimage.segmentation._felzenszwalb_cy import _felzenszwalb_cython
from skimage.transform import resize

from compat import save, workload_image

TOPIC = "xrai"


def cells_image(h=100, w=120):
    """Seven coloured Gaussian blobs and a faint texture."""
    i = np.arange(h, dtype=np.float64)[:, None, None]
    j = np.arange(w, dtype=np.float64)[None, :, None]
    c = np.arange(3, dtype=np.float64)[None, None, :]
    out = 0.05 * np.sin(0.7 * i + 0.3 * j + c)
    for k in range(7):
        cy = 10.0 + 12.0 * k
        cx = 15.0 + 40.0 * ((k * 3) % 7) / 3.0
        r = 6.0 + 2.0 * (k % 3)
        col = np.array([0.8 - 0.1 * k, 0.3 + 0.08 * k, 0.5 * ((k + 1) % 2)])[None, None, :]
        out = out + col * np.exp(-((i - cy) ** 2 + (j - cx) ** 2) / (2.0 * r * r))
    return out.astype(np.float32)


def shapes_image(h=90, w=110):
    """A rectangle and a disc on a colour ramp, with texture."""
    i = np.arange(h, dtype=np.float64)[:, None, None]
    j = np.arange(w, dtype=np.float64)[None, :, None]
    c = np.arange(3, dtype=np.float64)[None, None, :]
    out = 0.3 + 0.4 * j / w - 0.2 * c * i / h + 0.04 * np.sin(1.3 * i) * np.cos(0.9 * j + c)
    rect = ((i >= 10) & (i < 40) & (j >= 15) & (j < 50)).astype(np.float64)
    disc = (((i - 60.0) ** 2 + (j - 75.0) ** 2) <= 400.0).astype(np.float64)
    out = out + rect * np.array([0.5, -0.2, 0.1])[None, None, :]
    out = out + disc * np.array([-0.3, 0.4, 0.2])[None, None, :]
    return out.astype(np.float32)


def tanh_model(h, w):
    """f(x) = sum tanh(a x + b) with smooth per-pixel a, b; gradient a (1 - tanh^2)."""
    i = np.arange(h, dtype=np.float64)[:, None, None]
    j = np.arange(w, dtype=np.float64)[None, :, None]
    c = np.arange(3, dtype=np.float64)[None, None, :]
    a = 1.0 + 0.5 * np.sin(0.05 * i + 0.3 * c) * np.cos(0.04 * j)
    b = 0.2 * np.cos(0.03 * (i + j))

    def call_model(x_batch, call_model_args=None, expected_keys=None):
        x = np.asarray(x_batch, dtype=np.float64)
        g = a * (1.0 - np.tanh(a * x + b) ** 2)
        return {s.INPUT_OUTPUT_GRADIENTS: g.astype(x_batch.dtype)}
    return call_model


def label_maps(im):
    """The reference's segmentation up to the label images."""
    normalised = X._normalize_image(im, X._FELZENSZWALB_IM_VALUE_RANGE, X._FELZENSZWALB_IM_RESIZE)
    out = []
    for scale in X._FELZENSZWALB_SCALE_VALUES:
        seg = felzenszwalb(normalised, scale=scale, sigma=0.8, min_size=X._FELZENSZWALB_MIN_SEGMENT_SIZE)
        seg = resize(seg, im.shape[:2], order=0, preserve_range=True, mode="constant",
                     anti_aliasing=False).astype(int)
        out.append(seg)
    return out


def generate():
    rng = np.random.default_rng(4)

    for n in (5, 100, 129, 1000, 4099):
        for dt in (np.float64, np.float32):
            v = (rng.random(n) - 0.4).astype(dt)
            name = f"sum_{n}_{np.dtype(dt).name}"
            save(TOPIC, name, v)
            save(TOPIC, name + "_expected", np.array([np.sum(v), np.mean(v)], dtype=dt))

    # XRAI given segments and attribution.
    im = workload_image(40, 48)
    segs = X._get_segments_felzenszwalb(im)
    packed = np.packbits(np.array(segs).reshape(len(segs), -1), axis=1)
    save(TOPIC, "small_image", im)
    save(TOPIC, "small_segments_packed", packed)
    attr = rng.normal(0.0, 1.0, im.shape)
    save(TOPIC, "small_attr", attr)
    runs = {"full10": ("full", 1.0), "full04": ("full", 0.4), "fast": ("fast", 1.0)}
    for name, (algorithm, th) in runs.items():
        p = s.XRAIParameters(area_threshold=th, algorithm=algorithm, return_xrai_segments=True)
        out = s.XRAI().GetMaskWithDetails(im, None, segments=segs, base_attribution=attr, extra_parameters=p)
        save(TOPIC, f"small_{name}_mask", out.attribution_mask)
        save(TOPIC, f"small_{name}_ranks", out.segments.astype(np.int16))

    # XRAI with integrated gradients of a tanh network.
    x = rng.uniform(-1.0, 1.0, (12, 10, 3))
    save(TOPIC, "ig_x", x)
    rects = []
    for (r0, r1, c0, c1) in [(0, 6, 0, 5), (0, 12, 4, 10), (5, 12, 0, 6), (2, 9, 2, 8)]:
        m = np.zeros((12, 10), dtype=bool)
        m[r0:r1, c0:c1] = True
        rects.append(m)
    p = s.XRAIParameters(steps=20, return_ig_attributions=True, return_xrai_segments=True)
    p.experimental_params["min_pixel_diff"] = 5
    out = s.XRAI().GetMaskWithDetails(x, tanh_model(12, 10), segments=rects, batch_size=7, extra_parameters=p)
    save(TOPIC, "ig_mask", out.attribution_mask)
    save(TOPIC, "ig_ranks", out.segments.astype(np.int16))
    save(TOPIC, "ig_attrs", np.array(out.ig_attribution))

    # Felzenszwalb kernel without smoothing.
    for name, img in [("workload", workload_image(48, 64)), ("cells", cells_image(48, 64))]:
        save(TOPIC, f"felz_{name}_image", img)
        img64 = img.astype(np.float64)
        for scale, min_size in [(50, 20), (250, 20), (1200, 150), (100, 1)]:
            labels = _felzenszwalb_cython(img64, scale=scale, sigma=0.0, min_size=min_size)
            save(TOPIC, f"felz_{name}_{scale}_{min_size}", labels.astype(np.int16))

    # The segmentation pipeline's label images.
    for name, img in [("workload", workload_image()), ("cells", cells_image()), ("shapes", shapes_image())]:
        for scale, labels in zip(X._FELZENSZWALB_SCALE_VALUES, label_maps(img)):
            assert labels.max() < 256
            save(TOPIC, f"labels_{name}_{scale}", labels.astype(np.uint8))

    # End to end: the workload image with the nonlinear model.
    big = workload_image()
    heat = s.XRAI().GetMask(big, tanh_model(224, 224), batch_size=25)
    save(TOPIC, "e2e_heatmap", heat.astype(np.float32))
