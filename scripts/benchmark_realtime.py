#!/usr/bin/env python
"""Benchmark the real-time pipeline against the ``fer`` package on the same frames.

Detection recall, end-to-end emotion accuracy, FPS and the ``--detect-every`` trade-off;
the code is :mod:`fer_study.benchmarks.realtime` (``--help`` lists the options).

    python scripts/benchmark_realtime.py --accuracy-data data/fer2013.csv
    python scripts/benchmark_realtime.py --tune --accuracy-data data/fer2013.csv
"""

import sys

from fer_study.benchmarks.realtime import main

if __name__ == "__main__":
    sys.exit(main())
