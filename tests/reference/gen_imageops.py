"""Fixtures for the image kernels: scipy.ndimage.gaussian_filter and
skimage.transform.resize on small random arrays.

Each case saves its input (`<case>_x`) and the reference output (`<case>`);
the Rust tests read the case parameters from the table in
tests/parity_imageops.rs, which mirrors the tables below.
"""
import numpy as np
from scipy import ndimage
from skimage.transform import resize

from compat import save

TOPIC = "imageops"

# name, shape, sigma, mode, cval, truncate
GAUSSIAN = [
    ("g2_reflect", (23, 31), (1.5, 2.0), "reflect", 0.0, 4.0),
    ("g2_constant", (23, 31), (1.5, 2.0), "constant", 0.3, 4.0),
    ("g2_nearest", (23, 31), (1.5, 2.0), "nearest", 0.0, 4.0),
    ("g2_mirror", (23, 31), (1.5, 2.0), "mirror", 0.0, 4.0),
    ("g2_wrap", (23, 31), (1.5, 2.0), "wrap", 0.0, 4.0),
    ("g2_truncate", (23, 31), (2.2, 0.7), "reflect", 0.0, 2.5),
    ("g3_blur", (20, 17, 3), (3.0, 0.8, 0.0), "constant", 0.0, 4.0),
    ("g3_long_constant", (30, 25, 3), (12.0, 30.0, 0.0), "constant", 0.0, 4.0),
    ("g3_long_reflect", (30, 25, 3), (12.0, 30.0, 0.0), "reflect", 0.0, 4.0),
    ("g3_long_mirror", (30, 25, 3), (9.0, 20.0, 0.0), "mirror", 0.0, 4.0),
    ("g3_long_wrap", (30, 25, 3), (9.0, 20.0, 0.0), "wrap", 0.0, 4.0),
    ("g3_long_nearest", (30, 25, 3), (9.0, 20.0, 0.0), "nearest", 0.0, 4.0),
    ("g3_all_axes", (9, 8, 7), (1.0, 4.0, 2.0), "reflect", 0.0, 4.0),
    ("g1_small", (12,), (0.5,), "mirror", 0.0, 4.0),
    ("g2_line1", (1, 15), (3.0, 1.0), "mirror", 0.0, 4.0),
]


def generate_gaussian():
    rng = np.random.default_rng(31)
    for name, shape, sigma, mode, cval, truncate in GAUSSIAN:
        x = rng.uniform(-1, 2, shape)
        save(TOPIC, name + "_x", x)
        save(TOPIC, name, ndimage.gaussian_filter(x, sigma, mode=mode, cval=cval, truncate=truncate))
    # float32 input: SciPy keeps float32 between the axis passes.
    x = rng.uniform(-1, 2, (20, 17, 3)).astype(np.float32)
    save(TOPIC, "g3_f32_x", x)
    save(TOPIC, "g3_f32", ndimage.gaussian_filter(x, (2.5, 14.0, 0.0), mode="constant"))

# Wide kernels (sigma 50, radius 200): 224-sample lines, which the FFT path
# takes, and lines shorter than the radius, in every mode; lines of at least
# 128 samples whose period is shorter than the kernel.
# name, shape, sigma, mode, cval
WIDE_GAUSSIAN = [
    ("gw_reflect", (224, 6), (50.0, 50.0), "reflect", 0.0),
    ("gw_constant", (224, 6), (50.0, 50.0), "constant", 0.3),
    ("gw_nearest", (224, 6), (50.0, 50.0), "nearest", 0.0),
    ("gw_mirror", (224, 6), (50.0, 50.0), "mirror", 0.0),
    ("gw_wrap", (224, 6), (50.0, 50.0), "wrap", 0.0),
    ("gw_blur", (12, 224, 3), (50.0, 50.0, 0.0), "constant", 0.0),
    ("gw_odd_wrap", (223, 9), (31.0, 7.0), "wrap", 0.0),
    # Kernels wider than the period of the extended line (aliased kernels).
    ("gw_alias_reflect", (130, 4), (80.0, 0.0), "reflect", 0.0),
    ("gw_alias_mirror", (129, 4), (70.0, 0.0), "mirror", 0.0),
    ("gw_alias_wrap", (150, 4), (50.0, 0.0), "wrap", 0.0),
]


def generate_wide_gaussian():
    # Its own generator, so the cases above keep their inputs.
    rng = np.random.default_rng(33)
    for name, shape, sigma, mode, cval in WIDE_GAUSSIAN:
        x = rng.uniform(-1, 2, shape)
        save(TOPIC, name + "_x", x)
        save(TOPIC, name, ndimage.gaussian_filter(x, sigma, mode=mode, cval=cval))
    x = rng.uniform(-1, 2, (224, 30, 3)).astype(np.float32)
    save(TOPIC, "gw_f32_x", x)
    save(TOPIC, "gw_f32", ndimage.gaussian_filter(x, (50.0, 50.0, 0.0), mode="constant"))


# name, input shape, output shape, order, mode, cval, clip, anti_aliasing
RESIZE = [
    ("r2_up_o1", (7, 7), (50, 50), 1, "reflect", 0.0, True, None),
    ("r2_down_o1", (40, 33), (13, 17), 1, "reflect", 0.0, True, None),
    ("r2_mixed_o1", (20, 9), (7, 23), 1, "reflect", 0.0, True, None),
    ("r3_down_o1", (30, 26, 3), (11, 9), 1, "reflect", 0.0, True, None),
    ("r3_up_o1", (8, 7, 3), (19, 23, 3), 1, "reflect", 0.0, True, None),
    ("r2_edge_o1", (9, 12), (20, 7), 1, "edge", 0.0, True, None),
    ("r2_symmetric_o1", (9, 12), (20, 7), 1, "symmetric", 0.0, True, None),
    ("r2_wrap_o1", (9, 12), (20, 7), 1, "wrap", 0.0, True, None),
    ("r2_constant_o1", (9, 12), (20, 7), 1, "constant", 0.5, True, None),
    ("r2_constant_far_o1", (9, 12), (20, 7), 1, "constant", 3.0, True, False),
    ("r2_noaa_o1", (40, 33), (13, 17), 1, "reflect", 0.0, True, False),
    ("r3_down_o3", (30, 26, 3), (11, 9), 3, "constant", 0.0, True, True),
    ("r3_up_o3", (8, 7, 3), (19, 23), 3, "constant", 0.0, True, True),
    ("r2_mixed_o3", (20, 9), (7, 23), 3, "constant", 0.0, True, True),
    ("r2_reflect_o3", (10, 12), (23, 5), 3, "reflect", 0.0, True, None),
    ("r2_edge_o3", (10, 12), (23, 5), 3, "edge", 0.0, True, None),
    ("r2_symmetric_o3", (10, 12), (23, 5), 3, "symmetric", 0.0, True, None),
    ("r2_wrap_o3", (10, 12), (23, 5), 3, "wrap", 0.0, True, None),
    ("r2_noclip_o3", (10, 12), (23, 5), 3, "constant", 0.2, False, False),
    ("r2_up_o0", (12, 10), (31, 27), 0, "constant", 0.0, True, False),
    ("r2_down_o0", (30, 26), (11, 9), 0, "constant", 0.0, True, False),
    ("r2_default_o0", (30, 26), (11, 9), 0, "reflect", 0.0, True, None),
    ("r3_o2", (9, 8, 2), (5, 13), 2, "reflect", 0.0, True, None),
    ("r2_o5", (9, 8), (5, 13), 5, "symmetric", 0.0, True, None),
]


def generate_resize():
    rng = np.random.default_rng(32)
    for name, shape, out, order, mode, cval, clip, aa in RESIZE:
        if order == 0:
            x = rng.integers(0, 6, shape).astype(np.float64)  # a label map
        else:
            x = rng.uniform(-1, 2, shape)
        save(TOPIC, name + "_x", x)
        y = resize(x, out, order=order, mode=mode, cval=cval, clip=clip,
                   preserve_range=True, anti_aliasing=aa)
        save(TOPIC, name, y)
    x = rng.uniform(0, 1, (7, 7)).astype(np.float32)
    save(TOPIC, "r2_f32_x", x)
    save(TOPIC, "r2_f32", resize(x, (50, 50)))


def generate():
    generate_gaussian()
    generate_wide_gaussian()
    generate_resize()
