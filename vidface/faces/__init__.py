"""The faces stage: detect, track and smooth, align to the FFHQ template, paste back.

Modules: `detect` (detector interface and registry), `centerface` and `retinaface` (backends),
`track` (Kalman tracker, fixed-lag smoother, streaming stage), `align` (FFHQ 512 crops),
`paste` (soft-mask paste-back), `draw` and `export` (QA video overlay and JSON Lines).
This package imports nothing heavy at import time; each module imports what it needs.
"""
