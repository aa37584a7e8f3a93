"""The error a page user sees for a request the page refuses: the message in the page, one line
in the server's log (Gradio would print a traceback for each, noise for a request, not a fault)."""

from __future__ import annotations

import logging

import gradio as gr

from .text import shown

__all__ = ["refused"]

log = logging.getLogger("vitsearch.ui")


def refused(message: str) -> gr.Error:
    log.warning("refused: %s", shown(message))
    return gr.Error(message, print_exception=False)
