"""User-facing errors: the CLI prints them without a traceback and exits with code 2."""


class EdgeCNNError(ValueError):
    """Bad input from the user: the message names the thing and the fix."""


class ModelFileError(EdgeCNNError):
    """A model file is missing, truncated, corrupt or not of the expected format."""


class ImageError(EdgeCNNError):
    """An image is missing, unreadable, corrupt or cannot be converted."""


class ManifestError(EdgeCNNError):
    """A manifest is missing, invalid, or does not match its artifact."""


class ProviderError(EdgeCNNError):
    """A requested execution provider is not active (never a silent CPU fallback)."""


class OutputError(EdgeCNNError):
    """An output file or folder cannot be written (read-only, full disk, a file where a folder goes)."""
