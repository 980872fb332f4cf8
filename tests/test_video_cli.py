"""``efsora video analyze`` and ``efsora video stream``: a shipped clip, a video the reader brings,
and one-line errors with exit code 2 for missing, non-video, truncated or mis-specified input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from efsora_helpers.cli import main
from efsora_helpers.perception.schema import VideoResult
from efsora_helpers.video import frames as F


def _errors(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


@pytest.fixture(scope="module")
def user_mp4(tmp_path_factory):
    """An MP4 a reader brings: 30 frames cut from a shipped clip, re-encoded (MPEG-4 part 2, 15 fps)."""
    import av

    name = F.clip_names()[0]
    path = tmp_path_factory.mktemp("cli") / "my camera.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=15)
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        for _, img in sorted(F.read_frames(name, range(30)).items()):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_missing_file_is_one_line_and_exit_2(capsys, tmp_path):
    rc, err = _errors(capsys, ["video", "analyze", str(tmp_path / "nope.mp4")])
    assert rc == 2 and len(err) == 1 and "no such file" in err[0] and err[0].startswith("efsora: error:")


def test_text_file_renamed_mp4_is_one_line_and_exit_2(capsys, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 20)
    for action in ("analyze", "stream"):
        rc, err = _errors(capsys, ["video", action, str(bad)])
        assert rc == 2 and len(err) == 1 and "not a readable video" in err[0]


def test_truncated_webm_is_one_line_and_exit_2(capsys, tmp_path):
    cut = tmp_path / "cut.webm"
    cut.write_bytes(F.clip_path(F.clip_names()[0]).read_bytes()[:60_000])
    rc, err = _errors(capsys, ["video", "analyze", str(cut), "--out", str(tmp_path / "e.json")])
    assert rc == 2 and len(err) == 1 and "truncated" in err[0]
    assert not (tmp_path / "e.json").exists()


def test_bad_options_are_one_line_and_exit_2(capsys, tmp_path, user_mp4):
    zones = tmp_path / "zones.json"
    zones.write_text("[1, 2")
    for argv in (["--zones", str(zones)], ["--annotated", str(tmp_path / "a.gif")], ["--stride", "0"]):
        rc, err = _errors(capsys, ["video", "analyze", str(user_mp4), *argv])
        assert rc == 2 and len(err) == 1, (argv, err)


def test_no_traceback_from_the_installed_command(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"\x00" * 100)
    p = subprocess.run([sys.executable, "-m", "efsora_helpers.cli", "video", "analyze", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


@pytest.mark.slow
def test_analyze_a_video_the_reader_brings(tmp_path, user_mp4, capsys):
    name = F.clip_names()[0]
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps(F.zones(name)))
    out, ann = tmp_path / "events.json", tmp_path / "annotated.mp4"
    rc = main(["video", "analyze", str(user_mp4), "--zones", str(zones), "--out", str(out),
               "--annotated", str(ann), "--stride", "3"])
    assert rc == 0, capsys.readouterr().err
    result = VideoResult.model_validate_json(out.read_text())
    assert result.n_frames == 30 and result.source == user_mp4.name and set(result.zones) == set(F.zones(name))
    assert result.tracks and result.frames == [] and ann.stat().st_size > 10_000
    frames = F.decode(ann, progress=False).frames
    assert len(frames) == 30 and np.mean(frames[0]) > 20


@pytest.mark.slow
def test_stream_a_shipped_clip_prints_alerts_and_stats(capsys):
    name = "vest_off_near_miss" if "vest_off_near_miss" in F.clip_names() else F.clip_names()[0]
    rc = main(["video", "stream", name, "--max-frames", "150", "--stride", "5"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and out[-1].startswith("150 frames in") and "0 dropped" in out[-1]
