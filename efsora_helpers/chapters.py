"""The book's chapters in one place: number, short name, title and the plan's time estimate.

The short name (``slug``) is the same everywhere: ``book/<slug>/``, ``notebooks/<slug>/``,
``data/questions/<slug>.yaml`` and, where a chapter has helpers, ``efsora_helpers.<slug>``.
Taught in the introduction (``book/intro.md``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    number: int
    slug: str
    title: str
    plan_time: str  # the study plan's estimate (seed/task_plan.md); setup's is the book's own


CHAPTERS: tuple[Chapter, ...] = (
    Chapter(0, "setup", "Setting up", "1 hour"),
    Chapter(1, "perception", "Visual Perception Engine", "3-4 days"),
    Chapter(2, "reasoner", "Visual Reasoner", "3-4 days"),
    Chapter(3, "agent", "Multi-Modal Agent and Voice AI", "4-5 days"),
    Chapter(4, "finetuning", "Fine-tuning Lab", "3-4 days"),
    Chapter(5, "video", "Video Analytics Pipeline", "3-4 days"),
    Chapter(6, "production", "Production Deployment: Ship It", "3-4 days"),
    Chapter(7, "mock_interview", "Mock Interview", "3 rounds: 45 + 45 + 30 min"),
)

_BY_KEY = {c.number: c for c in CHAPTERS} | {c.slug: c for c in CHAPTERS}


def chapter(key: int | str) -> Chapter:
    """Look a chapter up by number (``1``) or short name (``"perception"``)."""
    try:
        return _BY_KEY[key]
    except KeyError:
        known = ", ".join(f"{c.number}={c.slug}" for c in CHAPTERS)
        raise KeyError(f"unknown chapter {key!r}; known chapters: {known}") from None
