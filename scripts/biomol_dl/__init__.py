"""biomol-dl: the library behind the workflow's rule scripts.

Importing this package is cheap on purpose: torch, rdkit and transformers are imported by the
modules that need them, so a validation job never pays for loading a language model.
"""

__version__ = "0.1.0"
