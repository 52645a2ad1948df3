"""The residue alphabet: the one definition of which letters are amino acids.

Validation (`protein` inputs), the protein featurizers, the homology-split aligner and the
pretrained-model tokenizer check all read these constants.
"""

from __future__ import annotations

STANDARD = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard amino acids, alphabetical by one-letter code
UNKNOWN = "X"
# Ambiguous / rare codes (Asx, Glx, Xle, selenocysteine, pyrrolysine) that validation may let
# through (`ambiguous` option); the featurizers encode them as UNKNOWN.
NONSTANDARD = "BZJUO"
AMBIGUOUS = UNKNOWN + NONSTANDARD
