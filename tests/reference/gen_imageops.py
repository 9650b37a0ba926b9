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


def generate():
    rng = np.random.default_rng(31)
    for name, shape, sigma, mode, cval, truncate in GAUSSIAN:
        x = rng.uniform(-1, 2, shape)
        save(TOPIC, name + "_x", x)
        save(TOPIC, name, ndimage.gaussian_filter(x, sigma, mode=mode, cval=cval, truncate=truncate))
    # float32 input: SciPy keeps float32 between the axis passes.
    x = rng.uniform(-1, 2, (20, 17, 3)).astype(np.float32)
    save(TOPIC, "g3_f32_x", x)
    save(TOPIC, "g3_f32", ndimage.gaussian_filter(x, (2.5, 14.0, 0.0), mode="constant"))
