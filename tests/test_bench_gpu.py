"""tools/bench_gpu.py's smoke run on the CPU (tiny model, batch 2): a faces/s figure for every lever
that runs, eager fp32 exactly equal to itself, bf16 close to it but not equal, a lever that cannot
run (CUDA graphs on a CPU) or that fails as one line while the run goes on and exits 0, CenterFace
on both runtimes, decode and encode in software (hardware video: a figure or one line), and the
end-to-end step's four runs and the ready model's start-up phases, and vidface's default lever
beside a thread busy in Python and as the restorer runs it."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path


TOOLS = Path(__file__).resolve().parents[1] / "tools"
QUICK = ["--device", "cpu", "--quick", "--no-record"]
FIGURES = re.compile(r"^  (?P<label>\S.*?)\s+batch\s+2: warm-up\s+[\d.]+ s,\s+(?P<fps>[\d.]+) faces/s, .*"
                     r"vs eager fp32: max (?P<max>[\d.]+), mean (?P<mean>[\d.]+) levels$", re.M)
# A lever's configuration that raises, as a compile error would: main() with it patched in.
BROKEN_BF16 = """
import sys
sys.path.insert(0, {tools!r})
import bench_gpu
configure = bench_gpu.configure
def broken(reference, lever):
    if lever.label == "eager bf16":
        raise RuntimeError("no kernel for this\\nsecond line of the error")
    return configure(reference, lever)
bench_gpu.configure = broken
raise SystemExit(bench_gpu.main(sys.argv[1:]))
"""


def figures(stdout: str) -> dict[str, tuple[float, float, float]]:
    """Lever label -> (faces/s, max, mean difference to eager fp32 in 8-bit levels)."""
    return {m["label"]: (float(m["fps"]), float(m["max"]), float(m["mean"])) for m in FIGURES.finditer(stdout)}


def run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def test_levers_parity_and_levers_that_cannot_run() -> None:
    """A faces/s figure and parity for every lever that runs; one that fails (as a compile error
    would) or is unavailable on a CPU is one line, and the run goes on to exit 0."""
    out = run([sys.executable, "-c", BROKEN_BF16.format(tools=str(TOOLS)), *QUICK, "--skip-end-to-end",
               "--levers", "eager-fp32,bf16,channels-last,ready-graphs,cudagraphs"])
    found = figures(out)
    assert set(found) == {"eager fp32", "+ channels_last"}, out
    assert all(fps > 0 for fps, _, _ in found.values()), out
    assert found["eager fp32"][1:] == (0.0, 0.0), out  # the reference against itself: the same bits
    _, largest, mean = found["+ channels_last"]  # on top of bf16 (the levers add up), whose setup ran
    assert 0 < largest < 64 and 0 < mean < 10, out
    assert re.search(r"^  eager bf16\s*: failed: RuntimeError: no kernel for this$", out, re.M), out
    assert "second line of the error" not in out, out
    assert len(re.findall(r"^  \+ CUDA graphs\s*: unavailable on cpu \(CUDA graphs\)$", out, re.M)) == 1, out
    assert len(re.findall(r"^  ready graphs\s*: unavailable on cpu \(CUDA graphs\)$", out, re.M)) == 1, out
    assert re.search(r"^  knee: batch [24] \(", out, re.M), out
    assert "end to end: skipped (--skip-end-to-end)" in out, out
    detection = re.findall(r"^  (640x360 frame|6 refinement crops)\s+onnxruntime \(CPU\) [\d.]+, torch \(cpu\) [\d.]+; "
                           r"onnxruntime / torch [\d.]+x; max \|difference\| (\S+)$", out, re.M)
    assert [what for what, _ in detection] == ["640x360 frame", "6 refinement crops"], out
    assert all(float(difference) < 1e-3 for _, difference in detection), out  # the same graph on both runtimes
    video = dict(re.findall(r"^  ((?:decode|encode), .+?)\s{2,}(\d.*|unavailable \(.*\))$", out, re.M))
    assert list(video) == ["decode, software", "decode, NVDEC", "encode, libx264 crf 18",
                           "encode, h264_nvenc cq 18"], out
    for way in ("decode, software", "encode, libx264 crf 18"):  # every machine has these
        fps, cpu_ms = re.fullmatch(r"([\d.]+) fps,\s+([\d.]+) CPU ms per frame", video[way]).groups()
        assert float(fps) > 0 and float(cpu_ms) > 0, out


def test_bf16_parity_and_end_to_end() -> None:
    """bf16 restores the same faces within its rounding; vidface's default lever (bf16 in NHWC
    or eager fp32, by the CPU) alone and beside a busy Python thread at both switch intervals;
    the end-to-end step's first run makes the ready model, the second loads it, the third cuts
    and pastes the faces with OpenCV and the fourth has the short switch interval, each with its
    figures and its stage queues' waits; then a fresh process loads the ready model (no diffusers)
    and restores a batch, its phases in order."""
    out = run([sys.executable, str(TOOLS / "bench_gpu.py"), *QUICK, "--levers", "eager-fp32,bf16,channels-last"])
    _, largest, mean = figures(out)["eager bf16"]
    assert 0 < largest < 64 and 0 < mean < 10, out  # bf16 rounds, but restores the same faces
    runs = re.findall(r"^  (first|second|third|fourth) run .*: model ready ([\d.]+) s after the start .* after that "
                      r"([\d.]+) faces/s \((\d+) faces.*end to end / model alone ([\d.]+)$", out, re.M)
    assert [r[0] for r in runs] == ["first", "second", "third", "fourth"], out
    assert all(float(ready) > 0 and float(fps) > 0 and int(faces) > 0 and float(ratio) > 0
               for _, ready, fps, faces, ratio in runs), out
    waits = re.findall(r"^    stage waits \(s, stage for room / its reader for it\): (.*)$", out, re.M)
    assert len(waits) == 4, out  # where each run waited: the stage that starves the model
    for line in waits:
        assert {stage for stage, _, _ in re.findall(r"(\w+) ([\d.]+)/([\d.]+)", line)} == {
            "decode", "faces", "model", "process"}, out
    phases = re.search(r"^  the ready model in a fresh process, from its start \(no diffusers\): torch imported ([\d.]+) s, "
                       r"vidface imported ([\d.]+) s, device ready ([\d.]+) s, model ready ([\d.]+) s, "
                       r"first batch restored ([\d.]+) s$", out, re.M)
    assert phases and 0 < float(phases[1]) <= float(phases[5]), out
    seconds = [float(figure) for figure in phases.groups()]
    assert seconds == sorted(seconds), out
    busy = re.findall(r"^  ([\d.]+) ms: alone ([\d.]+) faces/s, beside it ([\d.]+) \(([\d.]+)x\)$", out, re.M)
    assert [milliseconds for milliseconds, *_ in busy] == ["5", "0.2"], out
    assert all(float(alone) > 0 and float(beside) > 0 for _, alone, beside, _ in busy), out
    restorer = re.search(r"^[^\n]*, batch 2, as the restorer runs it \(2 tracks through the temporal stabiliser\): "
                         r"([\d.]+) faces/s against ([\d.]+) alone \(([\d.]+)x\)$", out, re.M)
    assert restorer and all(float(figure) > 0 for figure in restorer.groups()), out


def test_the_ready_lever_runs_the_exported_networks() -> None:
    """The ready-graphs lever's model holds the ready model's exported networks (each wrapped for
    CUDA graph replay, which needs a GPU): called directly, they restore what the lever's eager
    bf16 model restores, to within a level (the same operations; bf16 itself is 30 levels off fp32)."""
    import copy

    import torch

    sys.path.insert(0, str(TOOLS))
    import bench_gpu
    from bench import tiny_model

    from vidface.models.graph_file import GraphNetwork
    from vidface.models.loading import load_osdface
    from vidface.models.options import ModelOptions

    with tempfile.TemporaryDirectory() as folder:
        paths = tiny_model(Path(folder) / "model")
        reference = load_osdface(ModelOptions(weights=str(paths.release), base=str(paths.base), device="cpu",
                                              dtype="fp32", batch_size=2, channels_last=False), ready=False)
    ready = bench_gpu.configure(reference, bench_gpu.LEVERS["ready-graphs"])
    assert all(isinstance(network, bench_gpu.GraphReplay) and isinstance(network.network, GraphNetwork)
               for network in ready.networks)
    ready.encoder, ready.noise, ready.decoder = (network.network for network in ready.networks)
    eager = copy.deepcopy(reference).to(dtype=torch.bfloat16)
    crops = torch.rand(2, 3, reference.face_size, reference.face_size, generator=torch.Generator().manual_seed(0))
    difference = (ready.restore(crops) - eager.restore(crops)).abs().max().item() * 255
    assert difference < 1, difference
