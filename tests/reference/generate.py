#!/usr/bin/env python3
"""Writes the parity fixtures under tests/fixtures/ from the Python reference.

    pip install saliency==0.2.1 scikit-image scipy
    python3 tests/reference/generate.py [TOPIC ...]

Each gen_<topic>.py beside this file has a generate() that writes
tests/fixtures/<topic>/*.npy; with no arguments every topic is generated.
CI never runs this: the fixtures are committed.
"""
import glob
import importlib
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compat  # noqa: E402,F401  (installs the numpy shim first)
import saliency  # noqa: E402


def main():
    topics = sys.argv[1:] or sorted(
        os.path.basename(p)[4:-3] for p in glob.glob(os.path.join(HERE, "gen_*.py")))
    print(f"saliency {getattr(saliency, '__version__', '0.2.1')}, numpy {np.__version__}")
    for topic in topics:
        importlib.import_module("gen_" + topic).generate()
        print("wrote", topic)


if __name__ == "__main__":
    main()
