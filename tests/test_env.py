"""setup(): offline by default, seeded, device detection, keys reported but never shown."""

import os
import random

import numpy as np

import efsora_helpers as eh
from efsora_helpers.env import OFFLINE_VARIABLES


def test_setup_is_offline_seeded_and_reports_the_run(capsys, monkeypatch):
    monkeypatch.delenv("EFSORA_ONLINE", raising=False)
    ctx = eh.setup(chapter="perception", seed=123)
    first = (random.random(), np.random.rand())
    eh.setup(chapter=1, seed=123, quiet=True)
    assert (random.random(), np.random.rand()) == first
    out = capsys.readouterr().out
    assert "device: cpu" in out or "device: cuda" in out or "device: mps" in out
    assert ctx.chapter == 1 and ctx.profile in ("ci", "full") and ctx.offline
    for key in ("YOLO_OFFLINE", "HF_HUB_OFFLINE"):
        assert os.environ[key] == OFFLINE_VARIABLES[key]


def test_api_keys_are_reported_but_never_printed(capsys, monkeypatch):
    secret = "sk-test-" + "x" * 24
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    ctx = eh.setup()
    out = capsys.readouterr().out
    assert ctx.keys["OPENAI_API_KEY"] is True and ctx.keys["ANTHROPIC_API_KEY"] is False
    assert "openai: set" in out and "anthropic: not set" in out
    assert secret not in out and secret not in repr(ctx.summary())


def test_device_can_be_forced(monkeypatch):
    monkeypatch.setenv("EFSORA_DEVICE", "cpu")
    assert eh.detect_device() == "cpu"


def test_unknown_profile_and_chapter_are_clear_errors():
    import pytest

    with pytest.raises(ValueError, match="unknown profile"):
        eh.setup(profile="huge", quiet=True)
    with pytest.raises(KeyError, match="known chapters"):
        eh.chapter("robotics")


def test_ultralytics_gets_a_local_font():
    eh.setup(quiet=True)
    font = os.path.join(os.environ["YOLO_CONFIG_DIR"], "Ultralytics", "Arial.ttf")
    assert os.path.getsize(font) > 100_000
