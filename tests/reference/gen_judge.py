"""Fixtures for judging maps (src/metrics/regions.rs, agreement.rs, curves.rs),
computed independently with NumPy and SciPy.

Run: /work/venv/bin/python tests/reference/gen_judge.py

- Region scores: energy = sum of |mask| over channels (or the positive part of
  the channel sum); per region the mass share, area share, their ratio, the
  pointing-game hit at np.argmax, and the IoU of the region with the pixels
  `energy >= np.percentile(energy, 100 - k)`.
- Agreement: scipy.stats.spearmanr on maps with many ties, and the IoU of the
  two top-k % sets (same rule).
- Deletion / insertion: pixels in np.argsort(-map, kind="stable") order
  (decreasing, ties in row-major order), floor(k * N / steps) of them changed
  at point k, the model sigmoid(sum(w * x)), baselines zeros,
  scipy.ndimage.gaussian_filter(image, (s, s, 0), mode="reflect") and the
  per-channel mean; AUC = np.trapezoid(scores, fractions).
"""
import numpy as np
from scipy import ndimage, stats

from compat import save

TOPIC = "judge"
rng = np.random.default_rng(17)

# ---- region scores -------------------------------------------------------
H, W, C = 12, 10, 3
mask = rng.normal(size=(H, W, C))
mask[3:7, 2:6] *= 3.0  # a salient block
ii, jj = np.mgrid[0:H, 0:W]
regions = np.stack([
    (ii >= 3) & (ii < 7) & (jj >= 2) & (jj < 6),           # the block
    (ii - 8) ** 2 + (jj - 7) ** 2 <= 6,                      # a disk
    ii < 2,                                                  # a band
    (ii >= 2) & (ii < 9) & (jj >= 1) & (jj < 7),             # overlaps the block
])
save(TOPIC, "region_mask", mask)
save(TOPIC, "region_masks", regions.astype(np.uint8))


def region_scores(energy, k):
    total = energy.sum()
    peak = np.unravel_index(np.argmax(energy), energy.shape)
    top = energy >= np.percentile(energy, 100 - k)
    rows = []
    for r in regions:
        share = energy[r].sum() / total
        area = r.mean()
        iou = (top & r).sum() / (top | r).sum()
        rows.append([share, area, share / area, float(r[peak]), iou])
    return np.array(rows)


for k in (10.0, 25.0):
    save(TOPIC, f"region_abs_top{int(k)}", region_scores(np.abs(mask).sum(axis=2), k))
    save(TOPIC, f"region_pos_top{int(k)}", region_scores(np.maximum(mask.sum(axis=2), 0.0), k))

# ---- agreement -----------------------------------------------------------
maps = []
base = rng.normal(size=(9, 11))
for noise in (0.0, 0.5, 1.5, 3.0):
    m = base + noise * rng.normal(size=base.shape)
    maps.append(np.round(m * 2.0) / 2.0)  # quantised: many ties
maps[3][:4] = 0.0  # a flat patch, as a clipped map has
maps = np.stack(maps)
save(TOPIC, "agree_maps", maps)
n = len(maps)
rho = np.ones((n, n))
for a in range(n):
    for b in range(n):
        rho[a, b] = stats.spearmanr(maps[a].ravel(), maps[b].ravel()).statistic
save(TOPIC, "agree_spearman", rho)
for k in (10.0, 30.0):
    tops = [m >= np.percentile(m, 100 - k) for m in maps]
    iou = np.array([[(ta & tb).sum() / (ta | tb).sum() for tb in tops] for ta in tops])
    save(TOPIC, f"agree_iou_top{int(k)}", iou)

# ---- deletion and insertion ----------------------------------------------
H, W, C = 9, 7, 2
image = rng.uniform(-1.0, 1.0, size=(H, W, C))
weights = rng.normal(size=(H, W, C)) * 0.3
smap = np.round(rng.normal(size=(H, W)) * 1.5)  # integer levels: ties
save(TOPIC, "curve_image", image)
save(TOPIC, "curve_weights", weights)
save(TOPIC, "curve_map", smap)


def model(x):
    return 1.0 / (1.0 + np.exp(-(x * weights).sum()))


order = np.argsort(-smap.ravel(), kind="stable")
baselines = {
    "black": np.zeros_like(image),
    "blur": ndimage.gaussian_filter(image, sigma=(1.5, 1.5, 0.0), mode="reflect", truncate=4.0),
    "mean": np.broadcast_to(image.mean(axis=(0, 1)), image.shape).copy(),
}
N = H * W
for steps in (5, 8):
    for name, base in baselines.items():
        for kind in ("deletion", "insertion"):
            start, target = (image, base) if kind == "deletion" else (base, image)
            scores, fracs = [], []
            for k in range(steps + 1):
                count = k * N // steps
                x = start.copy().reshape(N, C)
                x[order[:count]] = target.reshape(N, C)[order[:count]]
                scores.append(model(x.reshape(H, W, C)))
                fracs.append(count / N)
            auc = np.trapezoid(scores, fracs)
            save(TOPIC, f"curve_{kind}_{name}_{steps}", np.array(scores + [auc]))
save(TOPIC, "curve_blur_baseline", baselines["blur"])
print("judge fixtures written")
