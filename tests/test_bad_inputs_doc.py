"""docs/BAD_INPUTS.md is the tables the two bad-input corpora print: regenerate it (see its head)
when a case is added, changed or removed."""

from __future__ import annotations

import test_config_corpus
import test_input_corpus
from conftest import ROOT


def test_bad_inputs_doc_lists_every_case_as_tested():
    doc = (ROOT / "docs" / "BAD_INPUTS.md").read_text()
    for module in (test_config_corpus, test_input_corpus):
        table = module.markdown_table().strip()
        assert table in doc, f"docs/BAD_INPUTS.md is out of date with {module.__name__}"
