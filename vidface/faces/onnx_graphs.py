"""ONNX graphs vidface makes from a model file once and keeps in its cache, and the onnxruntime
sessions that run them on the CPU (CenterFace's graph with symbolic dimensions, the face
descriptor's graph built from dlib's file): later runs read the made graph, without importing
onnx or building it again at the start of every run."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vidface.downloads import cache_root
from vidface.files import AtomicFile, forget_least_recently_used, mark_used, sha256_of_files

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["cpu_session", "made_graph", "session_options"]

log = logging.getLogger(__name__)

MakeGraph = Callable[[Path], bytes]
"""Builds a graph from a model file: the serialised ONNX model."""

KEEP = 3
"""Graphs kept per kind, the most recently used: this install's, and a few for others sharing the
cache (another environment with another model file); older ones are removed as a new one is made."""


def made_graph(kind: str, source: Path, version: str, make: MakeGraph) -> Path | bytes:
    """The graph `make` builds from `source`, as a file in vidface's cache (``kind/<digest>.onnx``,
    one per content of `source` and `version`: what `make` does, changed with it; the `KEEP` most
    recently used of a kind stay); the graph's bytes where the cache cannot be written."""
    cache = cache_root()
    source_digest = sha256_of_files({"source": source}, cache)["source"]
    digest = hashlib.sha256(f"{version}\n{source_digest}".encode()).hexdigest()[:24]
    target = cache / kind / f"{digest}.onnx"
    if target.is_file():
        mark_used(target)
        return target
    graph = make(source)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with AtomicFile(target) as file:
            file.file.write(graph)
    except OSError as error:
        log.debug("the %s graph is not kept (%s)", kind, error)
        return graph
    forget_least_recently_used(target.parent.glob("*.onnx"), target, KEEP)
    return target


def cpu_session(kind: str, source: Path, version: str, make: MakeGraph) -> onnxruntime.InferenceSession:
    """An onnxruntime session on the CPU (`session_options`) of `made_graph`; a damaged file in
    the cache, or one another process removed meanwhile (`KEEP`), is made again."""
    import onnxruntime

    graph = made_graph(kind, source, version, make)
    try:
        return onnxruntime.InferenceSession(graph, session_options(), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own exception kinds, for a file it cannot read
        if not isinstance(graph, Path):
            raise
        log.warning("the %s graph %s cannot be read (%s); it is made again",
                    kind, graph, (str(error) or type(error).__name__).splitlines()[0])
        graph.unlink(missing_ok=True)
        return onnxruntime.InferenceSession(made_graph(kind, source, version, make), session_options(),
                                            providers=["CPUExecutionProvider"])


def session_options() -> onnxruntime.SessionOptions:
    """onnxruntime settings for vidface's CPU networks: full graph optimisation (batch norms and
    affine layers fold into the convolutions), and worker threads that sleep instead of spinning
    between calls, so a network does not take CPU from decoding, encoding and the restorer
    running beside it (spinning made the detector markedly slower on a loaded 2-core machine)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # CenterFace's file carries unused batch-norm counters
    return options
