"""Video I/O: decode to `Frame` records, encode and stream-copy to the output, probe inputs."""
