"""SafetyScenes speech: offline Piper synthesis, byte-deterministic, a consistent dataset."""

import hashlib
import json
import subprocess
import sys
import wave

import numpy as np
import pytest

from efsora_helpers.paths import repo_root
from efsora_helpers.safetyscenes import speech as S

TEXT = "Is anyone in the forklift zone without a vest?"


def _sha(samples: np.ndarray) -> str:
    return hashlib.sha256(samples.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("speech")
    return out, S.generate_speech(out, progress=False)


def test_prompts_are_short_varied_and_unique():
    prompts = S.SPOKEN_PROMPTS
    assert 20 <= len(prompts) <= 30
    assert len({p["id"] for p in prompts}) == len(prompts)
    assert {p["kind"] for p in prompts} == {"question", "command"}
    for p in prompts:
        assert set(p) == {"id", "kind", "text"}
        assert 3 <= len(p["text"].split()) <= 14, p
        assert p["text"].endswith("?") == (p["kind"] == "question"), p
    words = " ".join(p["text"].lower() for p in prompts)
    for term in ("forklift", "hard hat", "high-visibility vest", "pallet", "aisle", "three"):
        assert term in words


def test_synthesis_is_deterministic_in_process_and_across_thread_counts():
    a, rate = S.synthesize(TEXT)
    b, _ = S.synthesize(TEXT)
    c, _ = S.synthesize(TEXT, num_threads=2)
    assert a.dtype == np.int16 and a.ndim == 1 and rate == 22050
    assert a.tobytes() == b.tobytes() == c.tobytes()


def test_synthesis_is_deterministic_in_a_fresh_process():
    here, _ = S.synthesize(TEXT)
    code = (
        "import hashlib; from efsora_helpers.safetyscenes import speech as S; "
        f"a, _ = S.synthesize({TEXT!r}); print(hashlib.sha256(a.tobytes()).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root(), capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == _sha(here)


def test_noisy_synthesis_is_deterministic_given_a_seed():
    noisy = dict(noise_scale=0.667, noise_w=0.8)
    a, _ = S.synthesize("Stop the alarm.", seed=3, **noisy)
    b, _ = S.synthesize("Stop the alarm.", seed=3, **noisy)
    c, _ = S.synthesize("Stop the alarm.", seed=4, **noisy)
    quiet, _ = S.synthesize("Stop the alarm.")
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes() and a.tobytes() != quiet.tobytes()


def test_durations_are_plausible_and_grow_with_text(dataset):
    _, records = dataset
    durations = np.array([r["duration_s"] for r in records])
    chars = np.array([len(r["text"]) for r in records])
    assert ((durations > 0.5) & (durations < 8.0)).all(), durations
    assert np.corrcoef(chars, durations)[0, 1] > 0.8
    seconds_per_char = durations / chars
    assert (seconds_per_char > 0.03).all() and (seconds_per_char < 0.12).all(), seconds_per_char

    normal, rate = S.synthesize("Stop the alarm.")
    slow, _ = S.synthesize("Stop the alarm.", length_scale=1.5)
    assert 1.3 < len(slow) / len(normal) < 1.7
    # real speech, not silence or clipping noise: full scale peak (piper normalises), quiet gaps
    assert np.abs(normal).max() > 20000 and np.median(np.abs(normal)) < 5000


def test_generate_speech_writes_every_wav_and_a_matching_manifest(dataset):
    out, records = dataset
    assert [r["id"] for r in records] == [p["id"] for p in S.SPOKEN_PROMPTS]
    lines = (out / "transcripts.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(records)
    for line, record, prompt in zip(lines, records, S.SPOKEN_PROMPTS):
        parsed = json.loads(line)
        assert parsed == record
        assert list(parsed) == sorted(parsed)
        assert set(parsed) == {"id", "kind", "text", "file", "sample_rate", "duration_s", "sha256"}
        assert (parsed["id"], parsed["kind"], parsed["text"]) == (prompt["id"], prompt["kind"],
                                                                  prompt["text"])
        wav_path = out / parsed["file"]
        assert parsed["file"] == f"{parsed['id']}.wav"
        assert hashlib.sha256(wav_path.read_bytes()).hexdigest() == parsed["sha256"]
        with wave.open(str(wav_path), "rb") as wav:
            assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
            assert wav.getframerate() == parsed["sample_rate"] == 22050
            assert round(wav.getnframes() / wav.getframerate(), 3) == parsed["duration_s"]
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(r["file"] for r in records)


def test_generate_speech_again_gives_the_same_bytes(dataset, tmp_path):
    _, records = dataset
    again = S.generate_speech(tmp_path, prompts=S.SPOKEN_PROMPTS[:2], progress=False)
    assert again == records[:2]


def test_write_wav_is_deterministic_and_round_trips(tmp_path):
    samples = (np.sin(np.arange(2205) / 7.0) * 8000).astype(np.int16)
    a = S.write_wav(tmp_path / "a.wav", samples, 22050)
    b = S.write_wav(tmp_path / "b.wav", samples, 22050)
    assert a.read_bytes() == b.read_bytes()
    back, rate = S.read_wav(a)
    assert rate == 22050 and back.tobytes() == samples.tobytes()
    with pytest.raises(ValueError, match="int16"):
        S.write_wav(tmp_path / "c.wav", samples.astype(np.float32), 22050)


def test_a_missing_voice_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Piper voice not found"):
        S.synthesize(TEXT, voice_path=tmp_path / "nowhere.onnx")
    lonely = tmp_path / "lonely.onnx"
    lonely.symlink_to(S.default_voice_path())
    with pytest.raises(FileNotFoundError, match=r"lonely\.onnx\.json"):
        S.synthesize(TEXT, voice_path=lonely)


def test_a_corrupt_voice_gives_a_clear_error(tmp_path):
    config = S.default_voice_path().with_name(S.default_voice_path().name + ".json")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model" * 100)
    (tmp_path / "broken.onnx.json").write_bytes(config.read_bytes())
    with pytest.raises(S.VoiceLoadError, match="not a loadable ONNX voice"):
        S.synthesize(TEXT, voice_path=broken)

    bad_config = tmp_path / "bad-config.onnx"
    bad_config.symlink_to(S.default_voice_path())
    (tmp_path / "bad-config.onnx.json").write_text("{not json")
    with pytest.raises(S.VoiceLoadError, match="not a Piper voice config"):
        S.synthesize(TEXT, voice_path=bad_config)
