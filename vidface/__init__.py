"""vidface: restore every face in a video with OSDFace, without flicker and without losing a stream."""

__version__ = "0.1.0"
