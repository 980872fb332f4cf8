"""Privacy and annotation (efsora_helpers.video.privacy, .annotate): the head rule's arithmetic, the
blur removes detail only where asked, the detector sees the raw frame and only the redacted one comes
back, annotated frames round-trip through the MP4/WebM writer, and the retention policy deletes
expired media and raw frames but keeps event records."""

import os
import time
from types import SimpleNamespace

import av
import numpy as np
import pytest
from PIL import Image

from efsora_helpers.perception.schema import TrackEvent
from efsora_helpers.video import annotate as A
from efsora_helpers.video import privacy as P
from efsora_helpers.vocabulary import EventKind, ObjectClass, Zone


def _texture(h=360, w=640, seed=0):
    """A frame full of fine detail (random pixels): every blur shows in its Laplacian variance."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_head_box_is_the_top_share_of_the_person_box_with_margins():
    assert P.head_box((100, 100, 140, 300), fraction=0.25, side=0.1, top=0.05) == (96, 90, 144, 150)
    assert P.head_box((100, 100, 140, 300), fraction=0.2, side=0.0, top=0.0) == (100, 100, 140, 140)
    # clipped to the frame: a worker at the top-left corner
    assert P.head_box((0, 0, 40, 200), fraction=0.25, side=0.1, top=0.05, shape=(360, 640)) == (0, 0, 44, 50)


def test_head_coverage_counts_the_share_of_the_hat_inside_the_rule():
    person = (100, 100, 140, 300)
    inside, half_below = (110, 100, 130, 120), (110, 140, 130, 160)  # rule ends at y = 150 (fraction 0.25)
    cov = P.head_coverage([(person, inside), (person, half_below)], fraction=0.25, side=0.1, top=0.05)
    assert cov.tolist() == [1.0, 0.5]


def test_blur_removes_detail_inside_regions_only():
    frame = _texture()
    region = (100, 50, 180, 130)
    out = P.blur_regions(frame, [region, (600, 300, 700, 400), (10, 10, 10, 40)])  # one clipped, one empty
    assert P.sharpness(out, region) < 0.02 * P.sharpness(frame, region)
    mask = np.ones(frame.shape[:2], bool)
    mask[50:130, 100:180] = False
    mask[300:360, 600:640] = False
    assert np.array_equal(out[mask], frame[mask])  # nothing outside the regions changed
    assert not np.array_equal(out[300:, 600:], frame[300:, 600:])  # the clipped region was blurred
    assert np.array_equal(frame, _texture())  # the input is not modified


def test_detector_sees_the_raw_frame_and_only_the_redacted_frame_comes_back():
    frame = _texture()
    seen = []

    def fake_detect(img):  # a fake detector: records its input, returns one person box
        seen.append(img.copy())
        return [SimpleNamespace(label=ObjectClass.PERSON, bbox=[200.0, 80.0, 260.0, 320.0])]

    detections, redacted = P.detect_then_redact(frame, fake_detect)
    assert np.array_equal(seen[0], frame) and len(detections) == 1
    head = P.head_box(detections[0].bbox, shape=frame.shape)
    assert P.sharpness(redacted, head) < 0.02 * P.sharpness(frame, head)
    crop = P.alert_crop(redacted, detections[0].bbox, pad=0.0)
    assert crop.shape == (240, 60, 3)
    assert np.array_equal(crop, redacted[80:320, 200:260])  # the alert keeps pixels of the redacted frame


def test_draw_on_a_blank_frame():
    blank = np.zeros((360, 640, 3), np.uint8)
    event = TrackEvent(frame=10, time_s=0.67, track_id=3, label=ObjectClass.PERSON, kind=EventKind.ENTER_ZONE,
                       zone=Zone.FORKLIFT_ZONE)
    zone = {Zone.FORKLIFT_ZONE: [[300, 150], [400, 150], [450, 300], [250, 300]]}
    out = A.draw(blank, [(3, ObjectClass.PERSON, 100, 100, 140, 300, 0.87), (6, ObjectClass.FORKLIFT, 400, 50, 500, 120)],
                 zones=zone, events=[event])
    assert out.shape == blank.shape and not blank.any()  # a new frame; the input is untouched
    assert tuple(out[200, 100]) == A.COLOURS[ObjectClass.PERSON]  # the box's left edge
    assert tuple(out[85, 400]) == A.COLOURS[ObjectClass.FORKLIFT]
    assert out[250, 350].any() and not out[250, 600].any()  # the zone is tinted, the floor beside it is not
    assert out[-10:].any()  # the event banner at the bottom
    assert not A.draw(blank, []).any()  # nothing to draw: the frame stays black
    untracked = A.draw(blank, [(None, ObjectClass.HARD_HAT, 10, 10, 30, 20, None)])  # no track id, no score
    assert tuple(untracked[15, 10]) == A.COLOURS[ObjectClass.HARD_HAT]


def test_hat_on_head_needs_the_hat_centre_in_the_head_region():
    person = (100, 100, 140, 300)  # head region (96, 90, 144, 150)
    assert P.hat_on_head(person, [(110, 95, 130, 110)])
    assert not P.hat_on_head(person, [(110, 200, 130, 215), (300, 95, 320, 110)])  # on the body; another worker
    assert not P.hat_on_head(person, [])


def test_draw_blurs_heads_before_drawing_unless_told_not_to():
    frame = _texture()
    person = (3, ObjectClass.PERSON, 100, 100, 140, 300)
    inner = (104, 104, 136, 140)  # inside the head region, clear of the box outline and its label
    blurred, raw = A.draw(frame, [person]), A.draw(frame, [person], blur_heads=False)
    assert P.sharpness(blurred, inner) < 0.02 * P.sharpness(frame, inner)
    assert np.array_equal(raw[104:140, 104:136], frame[104:140, 104:136])


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_writer_round_trip(tmp_path, suffix):
    # smooth frames (a moving gradient) so a lossy codec keeps them close
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.float32), (180, 1))
    frames = [np.dstack([np.roll(ramp, 8 * i, axis=1)] * 3).astype(np.uint8) for i in range(10)]
    path = tmp_path / f"clip{suffix}"
    with A.VideoWriter(path, fps=15, size=(320, 180)) as w:
        for f in frames:
            w.write(f)
    assert w.frames == 10
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name in (("h264", "mpeg4") if suffix == ".mp4" else ("vp9",))
        back = [f.to_ndarray(format="bgr24") for f in c.decode(stream)]
        assert float(stream.average_rate) == pytest.approx(15)
    assert len(back) == 10 and back[0].shape == (180, 320, 3)
    err = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, back)]
    assert max(err) < 8


def test_writer_falls_back_to_mpeg4_without_libx264(tmp_path, monkeypatch):
    real = av.codec.Codec

    def no_x264(name, mode="r"):  # an FFmpeg build without libx264
        if name == "libx264":
            raise av.error.FFmpegError(0, "no libx264")
        return real(name, mode)

    monkeypatch.setattr(av.codec, "Codec", no_x264)
    with A.VideoWriter(tmp_path / "clip.mp4", fps=15, size=(64, 48)) as w:
        for i in range(5):
            w.write(np.full((48, 64, 3), 40 * i, np.uint8))
    assert w.codec == "mpeg4"
    with av.open(str(w.path)) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4" and len(list(c.decode(video=0))) == 5


def test_writer_rejects_an_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="unsupported video suffix"):
        A.VideoWriter(tmp_path / "clip.avi.txt", fps=15, size=(64, 64))


def test_write_gif_is_small_and_downscaled(tmp_path):
    frames = [np.full((360, 640, 3), 40 * i, np.uint8) for i in range(5)]
    path = A.write_gif(frames, tmp_path / "a.gif", fps=5, width=160)
    with Image.open(path) as im:
        assert im.size == (160, 90) and im.n_frames == 5 and im.info["duration"] == 200


def test_retention_policy_on_a_temp_folder_with_fake_mtimes(tmp_path):
    now = time.time()
    day = 86400.0
    files = {"events.json": 400 * day, "tracks.jsonl": 2 * day, "clips/old.mp4": 10 * day,
             "clips/new.mp4": 1 * day, "alerts/crop_17.jpg": 5 * day, "raw/frame_0001.png": 0.0,
             "alerts/crop_18_raw.jpg": 0.0, "notes.bin": 50 * day}
    for name, age in files.items():  # fake modification times: each file made `age` seconds ago
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (now - age, now - age))
    policy = P.RetentionPolicy(media_days=3)
    dry = policy.apply(tmp_path, now=now, dry_run=True)
    assert all((tmp_path / n).exists() for n in files)  # a dry run deletes nothing
    report = policy.apply(tmp_path, now=now)
    rel = lambda paths: sorted(p.relative_to(tmp_path).as_posix() for p in paths)  # noqa: E731
    assert rel(report.deleted) == ["alerts/crop_17.jpg", "clips/old.mp4"] == rel(dry.deleted)
    assert rel(report.raw_deleted) == ["alerts/crop_18_raw.jpg", "raw/frame_0001.png"]
    assert rel(report.kept) == ["clips/new.mp4", "events.json", "tracks.jsonl"]
    assert rel(report.unknown) == ["notes.bin"]
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["clips/new.mp4", "events.json", "notes.bin", "tracks.jsonl"]
    assert P.RetentionPolicy(media_days=3, records_days=365).decide(tmp_path / "events.json", 400 * day) == "expired"


def test_hat_person_pairs_read_the_shipped_stills():
    pairs, orphans = P.hat_person_pairs()
    assert len(pairs) > 500 and orphans >= 0
    assert P.head_coverage(pairs).mean() > 0.95


def test_detail_share_ignores_drawn_pixels():
    frame = _texture()
    region = (100, 100, 180, 180)
    out = P.blur_regions(frame, [region])
    assert P.detail_share(out, frame, region) < 0.02
    assert P.detail_share(frame, frame, region) == 1.0
    bare = P.detail_share(out, frame, region)
    drawn = np.zeros(frame.shape[:2], bool)
    drawn[100:180, 138:142] = True  # a box edge drawn across the blurred region ...
    out[100:180, 138:142] = 255
    assert P.detail_share(out, frame, region) > 3 * bare  # ... is detail, unless ignored
    assert P.detail_share(out, frame, region, ignore=drawn) < 0.02
    assert P.detail_share(out, frame, (0, 0, 4, 4)) is None  # too few pixels
