"""spinecds: a CDS Hooks 2.0 service for metastatic spinal disease decisions."""

__version__ = "0.1.0"
