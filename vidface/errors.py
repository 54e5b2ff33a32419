"""Errors a user can act on.

Library code raises these with one line that names the bad value and the fix; the CLI prints
that line and exits 1. Anything else escaping to the CLI is a bug and keeps its traceback.
"""


class VidfaceError(Exception):
    """A failure the user can understand and act on; its message is one line."""


class InputError(VidfaceError):
    """The input file cannot be used (missing, not a video, truncated, no video stream...)."""


class OutputError(VidfaceError):
    """The output cannot be written (exists without -y, same as input, unwritable folder...)."""


class OutputExists(OutputError):
    """The output exists and replacing it was not asked for (-y)."""


class OutputBusy(OutputError):
    """Another run is writing the same output (it holds the output's lock)."""


class WeightsError(VidfaceError):
    """Model weights are missing, corrupt or do not match the expected layout."""


class DeviceMemoryError(VidfaceError):
    """The model's device has too little free memory for the model or for its batch of faces."""
