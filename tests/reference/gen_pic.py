"""Fixtures for the PIC metrics (saliency.metrics.pic).

Blurred images: SciPy's griddata triangulates with Qhull. On an integer pixel
grid the Delaunay triangulation is often not unique (four or more kept pixels
on one empty circle), and where two valid triangulations differ the
interpolated values differ. For every mask this script therefore also saves
`trusted_<mask>`: the pixels that lie in (or on) a triangle of Qhull's
triangulation whose circumcircle passes through no fourth kept pixel (checked
in exact integer arithmetic). Such triangles are in every Delaunay
triangulation, so on those pixels any correct implementation must agree with
the reference; the other pixels are where the choice of triangles matters.
The `sparse_*` masks are random masks drawn until the whole triangulation is
unique (every pixel trusted); `medium`, `dense_random` and `grid2` are not.

PIC curves: a simple prediction function, 1 - mean|image - original| / 255
(1 on the original image), on a 64 x 64 generated image with a random
saliency map, and on a 224 x 224 image with a hashed saliency map and random
mask (computed the same way in the Rust test, so they are not stored).
"""
import numpy as np
from scipy.spatial import Delaunay, cKDTree
from saliency.metrics import pic

from compat import FIXTURES, save, workload_image

# NumPy 2.4 removed np.trapz, which the reference calls for the AUC;
# np.trapezoid is the same formula.
if not hasattr(np, "trapz"):
    np.trapz = np.trapezoid

TOPIC = "pic"
H, W = 40, 48


def to_u8(x):
    """A float workload image mapped to 0..255."""
    return np.clip((x + 0.6) / 2.2 * 255.0, 0, 255).round().astype(np.uint8)


def with_corners(mask):
    mask = mask.copy()
    mask[[0, 0, -1, -1], [0, -1, 0, -1]] = True
    return mask


def incircle_zero(a, b, c, d):
    """Whether d lies exactly on the circle through a, b, c (integers)."""
    m = [[x[0] - d[0], x[1] - d[1], (x[0] - d[0]) ** 2 + (x[1] - d[1]) ** 2] for x in (a, b, c)]
    det = (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
           - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
           + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))
    return det == 0


def trusted_pixels(mask):
    """Pixels whose interpolation does not depend on the choice among valid
    Delaunay triangulations (see the module docstring), and the number of
    ambiguous edges."""
    full = with_corners(mask)
    pts = np.argwhere(full)
    tri = Delaunay(pts.astype(np.float64))
    P = [tuple(int(v) for v in p) for p in pts]
    unique = np.ones(len(tri.simplices), dtype=bool)
    ambiguous_edges = 0
    for s, simplex in enumerate(tri.simplices):
        a, b, c = (P[i] for i in simplex)
        if (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) == 0:
            unique[s] = False  # a flat simplex (Qhull may emit them on the hull)
            continue
        for k in range(3):
            nb = tri.neighbors[s, k]
            if nb < 0:
                continue
            d = P[[v for v in tri.simplices[nb] if v not in simplex][0]]
            if incircle_zero(a, b, c, d):
                unique[s] = False
                if nb > s:
                    ambiguous_edges += 1
    trusted = full.copy()
    h, w = mask.shape
    for s in np.flatnonzero(unique):
        a, b, c = (P[i] for i in tri.simplices[s])
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if area < 0:
            b, c = c, b
        for r in range(min(a[0], b[0], c[0]), max(a[0], b[0], c[0]) + 1):
            for q in range(min(a[1], b[1], c[1]), max(a[1], b[1], c[1]) + 1):
                e = [(y[0] - x[0]) * (q - x[1]) - (y[1] - x[1]) * (r - x[0]) for x, y in ((a, b), (b, c), (c, a))]
                if min(e) >= 0:
                    trusted[r, q] = True
    return trusted, ambiguous_edges


def nearest_ties(mask):
    """Unknown pixels with two or more equally near kept pixels (where
    nearest-neighbour results depend on tie breaking)."""
    full = with_corners(mask)
    pts = np.argwhere(full).astype(np.float64)
    unknown = np.argwhere(~full)
    d, _ = cKDTree(pts).query(unknown, k=2)
    ties = np.zeros_like(full)
    ties[tuple(unknown[d[:, 0] == d[:, 1]].T)] = True
    return ties


def unique_random_mask(h, w, fraction, first_seed):
    seed = first_seed
    while True:
        mask = np.random.default_rng(seed).random((h, w)) < fraction
        trusted, amb = trusted_pixels(mask)
        if amb == 0 and trusted.all():
            return mask, seed
        seed += 1


def hashed_saliency(h, w):
    """A random-looking saliency map from integer hashing (exact in any
    language): ((i * 7919 + j * 104729) * 2654435761) mod 2^32."""
    i = np.arange(h, dtype=np.uint64)[:, None]
    j = np.arange(w, dtype=np.uint64)[None, :]
    return (((i * 7919 + j * 104729) * 2654435761) % (1 << 32)).astype(np.float64)


def hashed_random_mask(h, w):
    """About 1% of the pixels, from another integer hash:
    ((i * 92821 + j * 68917) * 2246822519) mod 2^32 mod 100 == 0."""
    i = np.arange(h, dtype=np.uint64)[:, None]
    j = np.arange(w, dtype=np.uint64)[None, :]
    return (((i * 92821 + j * 68917) * 2246822519) % (1 << 32)) % 100 == 0


def pred_fn(original):
    orig = original.astype(np.float64)

    def predict(batch):
        return [1.0 - np.abs(img.astype(np.float64) - orig).mean() / 255.0 for img in batch]

    return predict


def save_pic(name, img, saliency, random_mask, thresholds, keep_monotonous=True, store_images=True,
             store_curve=True):
    r = pic.compute_pic_metric(img=img, saliency_map=saliency, random_mask=random_mask,
                               pred_func=pred_fn(img), saliency_thresholds=thresholds,
                               keep_monotonous=keep_monotonous)
    save(TOPIC, f"{name}_auc", np.array([r.auc]))
    if store_curve:
        save(TOPIC, f"{name}_curve_y", np.asarray(r.curve_y, dtype=np.float64))
    save(TOPIC, f"{name}_predictions", np.asarray(r.predictions, dtype=np.float64))
    save(TOPIC, f"{name}_entropies", np.array([pic.estimate_image_entropy(b) for b in r.blurred_images],
                                              dtype=np.int64))
    if store_images:
        save(TOPIC, f"{name}_blurred", np.stack(r.blurred_images))
    print(f"  {name}: AUC {r.auc:.6f}")


MASK_NAMES = ["sparse_a", "sparse_b", "sparse_c", "medium", "dense_random", "grid2"]


def alpha_channel(h, w):
    """An alpha channel with fully transparent pixels (whose colour the encoder may change)."""
    i = np.arange(h)[:, None]
    j = np.arange(w)[None, :]
    return np.where((i + j) % 5 == 0, 0, (i * 37 + j * 11) % 256).astype(np.uint8)


def save_webp_sizes():
    """estimate_image_entropy of stored images (RGB and grey) and of two built
    from them with alpha_channel (grey + alpha, RGBA), in this order."""
    load = lambda name: np.load(f"{FIXTURES}/{TOPIC}/{name}.npy")
    names = (["blur_image_u8"] + [f"blur_{m}_u8" for m in MASK_NAMES] + [f"nearest_{m}_u8" for m in MASK_NAMES]
             + ["pic64_image", "pic64_grey_image", "pic224_image"])
    images = [load(n) for n in names]
    grey, rgb = load("pic64_grey_image"), load("pic64_image")
    images.append(np.dstack([grey, alpha_channel(*grey.shape)]))
    images.append(np.dstack([rgb, alpha_channel(*grey.shape)]))
    save(TOPIC, "webp_sizes", np.array([pic.estimate_image_entropy(i) for i in images], dtype=np.int64))


def generate():
    base = workload_image(H, W).astype(np.float64)
    img_u8 = to_u8(base)
    img_f64 = base
    img_grey_f32 = base.mean(axis=2).astype(np.float32)
    save(TOPIC, "blur_image_u8", img_u8)
    save(TOPIC, "blur_image_f64_as_f32", img_f64.astype(np.float32))  # exact: built from float32
    save(TOPIC, "blur_image_grey_f32", img_grey_f32)

    masks = {}
    for name, fraction, seed in [("sparse_a", 0.01, 0), ("sparse_b", 0.02, 100), ("sparse_c", 0.03, 200)]:
        masks[name], used = unique_random_mask(H, W, fraction, seed)
        print(f"  mask {name}: fraction {fraction}, first unique seed {used} (from {seed})")
    rng = np.random.default_rng(7)
    masks["medium"] = rng.random((H, W)) < 0.1
    masks["dense_random"] = rng.random((H, W)) < 0.75
    grid = np.zeros((H, W), dtype=bool)
    grid[::2, ::2] = True
    masks["grid2"] = grid

    for name, mask in masks.items():
        trusted, amb = trusted_pixels(mask)
        unknown = ~with_corners(mask)
        print(f"  mask {name}: {mask.sum()} kept, {amb} ambiguous Delaunay edges, "
              f"{(~trusted).sum()} of {unknown.sum()} unknown pixels not trusted")
        save(TOPIC, f"mask_{name}", mask)
        save(TOPIC, f"trusted_{name}", trusted)
        save(TOPIC, f"blur_{name}_u8", pic.create_blurred_image(img_u8, mask))
        if name not in ("dense_random", "grid2"):
            save(TOPIC, f"blur_{name}_f64", pic.create_blurred_image(img_f64, mask))
        save(TOPIC, f"blur_{name}_grey_f32", pic.create_blurred_image(img_grey_f32, mask))
        save(TOPIC, f"nearest_{name}_u8", pic.create_blurred_image(img_u8, mask, method="nearest"))
        save(TOPIC, f"nearest_ties_{name}", nearest_ties(mask))

    # PIC curves. 64 x 64: random saliency, default thresholds, both curve modes.
    img64 = to_u8(workload_image(64, 64).astype(np.float64))
    rng = np.random.default_rng(11)
    saliency64 = rng.random((64, 64))
    random64 = rng.random((64, 64)) < 0.01
    save(TOPIC, "pic64_image", img64)
    save(TOPIC, "pic64_saliency", saliency64)
    save(TOPIC, "pic64_random_mask", random64)
    thresholds = [0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34, 0.5, 0.75]
    save_pic("pic64", img64, saliency64, random64, thresholds)
    save_pic("pic64_nonmono", img64, saliency64, random64, thresholds, keep_monotonous=False, store_images=False,
             store_curve=False)
    grey64 = np.mean(img64, axis=2).astype(np.uint8)
    save(TOPIC, "pic64_grey_image", grey64)
    save_pic("pic64_grey", grey64, saliency64, random64, [0.01, 0.02, 0.1, 0.5], store_images=False,
             store_curve=False)

    # 224 x 224, 13 thresholds (the timing workload's size): hashed saliency.
    img224 = to_u8(workload_image(224, 224).astype(np.float64))
    random224 = hashed_random_mask(224, 224)
    save(TOPIC, "pic224_image", img224)
    save_pic("pic224", img224, hashed_saliency(224, 224), random224, thresholds, store_images=False)

    # Aggregation: the reference test's case and a random one, mean and median.
    x = [0.0, 0.25, 0.5, 0.75, 1.0]
    ys = np.array([[0.0, 0.2, 0.4, 0.6, 1.0], [0.0, 0.4, 0.4, 0.4, 1.0]])
    curve_x = np.linspace(0.0, 1.0, 101)
    ys_random = np.sort(np.random.default_rng(5).random((5, 101)), axis=1)
    for name, xs, curves in [("agg_small", np.array(x), ys), ("agg_random", curve_x, ys_random),
                             ("agg_random4", curve_x, ys_random[:4])]:
        results = [pic.PicMetricResult(curve_x=list(xs), curve_y=list(y), blurred_images=[], predictions=[],
                                       thresholds=[], auc=0.0) for y in curves]
        save(TOPIC, f"{name}_x", xs)
        save(TOPIC, f"{name}_ys", curves)
        for method in ("mean", "median"):
            r = pic.aggregate_individual_pic_results(results, method=method)
            save(TOPIC, f"{name}_{method}_y", np.asarray(r.curve_y, dtype=np.float64))
            save(TOPIC, f"{name}_{method}_auc", np.array([r.auc]))

    save_webp_sizes()
