"""The face restorer: OSDFace (osdface.py) with its Visual Representation Embedder
(embedder.py), weight loading (loading.py), run options (options.py), and per-track temporal
stabilisation (temporal.py). Import the submodules; this package imports nothing heavy."""
