#!/usr/bin/env python3
"""Times saliency.metrics.pic.compute_pic_metric on the 224 x 224 x 3 PIC
fixture image with 13 thresholds; examples/pic_timing.rs times the crate on
the same input. Prints `pic<TAB>median seconds`.

    python3 tests/reference/pic_timing.py [--repeat N]
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compat  # noqa: E402,F401
from gen_pic import hashed_random_mask, hashed_saliency, pred_fn  # noqa: E402  (also installs np.trapz)
from saliency.metrics import pic  # noqa: E402

THRESHOLDS = [0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34, 0.5, 0.75]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    img = np.load(os.path.join(HERE, "..", "fixtures", "pic", "pic224_image.npy"))
    saliency = hashed_saliency(224, 224)
    random_mask = hashed_random_mask(224, 224)
    predict = pred_fn(img)
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        pic.compute_pic_metric(img=img, saliency_map=saliency, random_mask=random_mask, pred_func=predict,
                               saliency_thresholds=THRESHOLDS)
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"pic\t{times[len(times) // 2]:.6f}", flush=True)


if __name__ == "__main__":
    main()
