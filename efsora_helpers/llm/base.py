"""The provider interface every adapter implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator

from .types import ChatRequest, ChatResponse, StreamEvent


class Provider(ABC):
    name: str = ""

    @abstractmethod
    def complete(self, request: ChatRequest) -> ChatResponse:
        """One call, the whole answer."""

    @abstractmethod
    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Text deltas as they arrive, then one ``done`` event with the full response."""

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` for this provider. The default is the local model's tokenizer: an
        estimate for hosted models (each has its own tokenizer), exact for the local one."""
        from .ort_runtime import load_default_model

        return load_default_model().count_tokens(text)
