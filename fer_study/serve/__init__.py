"""Serve the recogniser over HTTP: a REST + WebSocket API and a browser webcam page.

``python -m fer_study serve`` starts it (FastAPI on uvicorn, 127.0.0.1:8000 by default);
``python -m fer_study benchmark-serve`` load-tests it.  Importing this package is cheap:
FastAPI, uvicorn and the model load only when a command runs.

* :mod:`fer_study.serve.uploads` - checks and decodes uploaded images;
* :mod:`fer_study.serve.engine` - the shared model, detector pool, per-stream sessions;
* :mod:`fer_study.serve.schemas` - response models (the OpenAPI docs);
* :mod:`fer_study.serve.app` - the FastAPI app (:func:`~fer_study.serve.app.create_app`);
* :mod:`fer_study.serve.loadtest` - the load benchmark (its clients:
  :mod:`fer_study.serve.load_clients`);
* :mod:`fer_study.serve.samples` - a real one-face test frame and every kind of bad upload;
* :mod:`fer_study.serve.commands` - the two subcommands.
"""

from fer_study.serve.commands import add_serve_subcommands

__all__ = ["add_serve_subcommands"]
