"""afterimage: watches official accounts for recycled images and deletions, and keeps the evidence."""

__version__ = "0.1.0"
