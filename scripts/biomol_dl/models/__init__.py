"""Model-family registry: the `family` of a config model entry -> its Family class.

A family is one class in one module of this package, registered with `@register("<name>")`
(models/base.py holds the contract). `families()` imports every module here once and returns
{name: class}; `get_family(name)` fails listing the valid names. Each family gets its own
training rule `train_<family>` (workflow/rules/train.smk), with its own threads, memory and GPU
request, all served by one rule script, scripts/train.py.

FAMILIES: {name: {"kind", "gpu", "torch", "featurizers", "model_file", "mem_mb", "runtime"}},
what the rules read.
"""

from __future__ import annotations

from biomol_dl.models.base import Family, families, get_family, register

FAMILIES: dict[str, dict] = {name: cls.meta() for name, cls in families().items()}


__all__ = ["FAMILIES", "Family", "families", "get_family", "register"]
