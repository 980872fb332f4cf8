"""A response cache for deterministic calls (temperature 0): same request, same answer, no cost.

Keyed by a hash of the whole request (provider, model, messages, tools, schema, sampling). An
optional directory keeps entries across processes; files are written atomically. Taught in
``notebooks/reasoner/06_injection_and_cost.ipynb``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

from ..paths import write_atomically
from .types import ChatResponse


class ResponseCache:
    def __init__(self, max_entries: int = 1024, directory: str | Path | None = None):
        self.max_entries = max_entries
        self.directory = Path(directory) if directory else None
        self._memory: OrderedDict[str, ChatResponse] = OrderedDict()
        self.hits = self.misses = 0
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> ChatResponse | None:
        hit = self._memory.get(key)
        if hit is None and self.directory and (self.directory / f"{key}.json").exists():
            hit = ChatResponse.model_validate_json((self.directory / f"{key}.json").read_text())
            self._memory[key] = hit
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        self._memory.move_to_end(key)
        return hit.model_copy(update={"cached": True, "cost_usd": 0.0 if hit.cost_usd is not None else None})

    def put(self, key: str, response: ChatResponse) -> None:
        self._memory[key] = response
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)
        if self.directory:
            write_atomically(self.directory / f"{key}.json", json.dumps(response.model_dump(mode="json")))

    def __len__(self) -> int:
        return len(self._memory)
