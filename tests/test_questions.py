"""The question bank: valid, unique, rendered pages up to date, unanswered shown as such."""

import pytest
import yaml
from pydantic import ValidationError

from efsora_helpers.chapters import CHAPTERS
from efsora_helpers.questions import Question, QuestionBank, load_bank, render_chapter, render_pages


def test_bank_loads_and_every_chapter_has_questions():
    bank = load_bank()
    for ch in CHAPTERS[1:]:
        assert bank.for_chapter(ch.number), f"chapter {ch.number} has no questions"


def test_plan_questions_are_seeded():
    plan = [q for q in load_bank().questions if q.origin == "plan"]
    assert len(plan) >= 30  # CURRICULUM.md lists 33 plan questions across chapters 1-6


def test_rendered_pages_are_up_to_date():
    stale = render_pages(check=True)
    assert stale == [], f"run `efsora questions render`: {stale}"


def test_unanswered_question_is_rendered_as_unanswered():
    q = Question(id="perception-demo-q", chapter=1, question="What is a demo question?")
    page = render_chapter(QuestionBank([q]), 1)
    assert "No model answer yet" in page


def test_an_answer_needs_key_points_and_sources():
    with pytest.raises(ValidationError, match="key_points and at least one source"):
        Question(id="perception-demo-q", chapter=1, question="What is a demo question?", answer="Because.")


def test_answered_question_renders_its_sources():
    q = Question(
        id="perception-demo-q", chapter=1, question="What is a demo question?", answer="A short answer.",
        key_points=["one point"],
        sources=[{"title": "A source", "url": "https://example.org/doc", "note": "figure X, CPU, 2026"}],
    )
    page = render_chapter(QuestionBank([q]), 1)
    assert "[A source](https://example.org/doc): figure X, CPU, 2026" in page
    assert "No model answer yet" not in page


def test_duplicate_ids_are_rejected():
    q = Question(id="perception-demo-q", chapter=1, question="What is a demo question?")
    with pytest.raises(ValueError, match="duplicate"):
        QuestionBank([q, q])


def test_a_question_in_the_wrong_chapter_file_is_rejected(tmp_path):
    (tmp_path / "perception.yaml").write_text(yaml.safe_dump(
        {"chapter": 1, "questions": [{"id": "video-x-y", "chapter": 5, "question": "Which chapter am I in?"}]}
    ))
    with pytest.raises(ValueError, match="chapter 5, file is 1"):
        load_bank(tmp_path)


def test_sampling_is_deterministic_and_filtered():
    bank = load_bank()
    first = bank.sample(3, chapters=[1, 2], seed=3)
    assert first == bank.sample(3, chapters=[1, 2], seed=3)
    assert {q.chapter for q in first} <= {1, 2}
    with pytest.raises(ValueError):
        bank.sample(1000)
