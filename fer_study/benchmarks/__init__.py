"""Benchmarks of the deployment against the ``fer`` package, run by ``scripts/benchmark_*``.

* :mod:`~fer_study.benchmarks.realtime`: detection recall, end-to-end emotion accuracy,
  FPS and the ``detect_every`` trade-off (``reports/results/benchmark_realtime.json``);
* :mod:`~fer_study.benchmarks.robustness`: accuracy under corruptions
  (``reports/results/benchmark_robustness.json``);
* :mod:`~fer_study.benchmarks.scenes` and :mod:`~fer_study.benchmarks.scoring`: frames
  with known faces, and scoring detections against them;
* :mod:`~fer_study.benchmarks.summary`: the real-time targets, headline and tables;
* :mod:`~fer_study.benchmarks.tuning`: how the deployment's defaults were chosen;
* :mod:`~fer_study.benchmarks.classifiers`, :mod:`~fer_study.benchmarks.common`: the
  classifier side, machine information and statistics.

The ``fer`` package itself is wrapped by :mod:`fer_study.baselines`.
"""
