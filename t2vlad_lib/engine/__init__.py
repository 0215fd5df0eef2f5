"""Layer 3, engine: from a config to a trained, evaluated run on disk.

``config`` (dataclasses and named profiles), ``pipeline`` (data preparation), ``evaluate``, ``runs`` (run
identity, building and loading models), ``loop`` (the training loop: epochs of steps, callbacks by event),
``train`` (the dual encoder's trainer: its step loss and callbacks), ``index`` and ``search`` (retrieval at
scale). Imports ``core``, ``data`` and ``model``; knows nothing of the extensions or the course.
"""
