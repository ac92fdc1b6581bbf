"""Griffe extension: sarvit's docstrings as the API pages should show them.

Napoleon's ``Example:`` section becomes Google's ``Examples:`` (shown as code, not as Markdown prose, where
``>>>`` would read as quotes), and Sphinx roles (``:func:`name```), which Markdown cannot read, become code spans.
"""
from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc):`~?([^`]+)`")
_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class MarkdownDocstrings(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", _EXAMPLE.sub(r"\1Examples:", obj.docstring.value))
