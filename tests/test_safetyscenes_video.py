"""SafetyScenes video: deterministic clips, ground truth that agrees with itself, readable files."""

import hashlib
import json

import cv2
import numpy as np
import pytest

from efsora_helpers.safetyscenes import video as V
from efsora_helpers.safetyscenes.render import CLASSES, Painter, _forklift, _worker

SEED, SECONDS, FPS, W, H = 7, 4.0, 15, 320, 180


def _render(seed=SEED):
    return V.render_clip(seed, seconds=SECONDS, fps=FPS, width=W, height=H)


def _digest(clip) -> str:
    h = hashlib.sha256()
    for frame in clip.frames:
        h.update(frame.tobytes())
    truth = [clip.tracks, clip.feet, clip.events, clip.actors, clip.zones]
    h.update(json.dumps(truth, sort_keys=True).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def clip():
    return _render()


@pytest.fixture(scope="module")
def written(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("video")
    return out, V.write_clip(clip, out, "clip")


def _row(clip, f, tid):
    return next((r for r in clip.tracks[f] if r[0] == tid), None)


def _in_zone(clip, f, tid) -> bool:
    poly = np.asarray(clip.zones["forklift_zone"], np.float32)
    return cv2.pointPolygonTest(poly, tuple(float(v) for v in clip.feet[f][tid]), False) >= 0


def test_same_seed_same_clip(clip):
    again = _render()
    assert len(again.frames) == len(clip.frames) == int(SECONDS * FPS)
    assert all(a.dtype == np.uint8 and a.shape == (H, W, 3) for a in again.frames)
    assert _digest(again) == _digest(clip)
    assert _digest(_render(SEED + 1)) != _digest(clip)


def test_boxes_are_inside_the_frame_and_visibility_is_a_fraction(clip):
    ids = {a["id"]: a["label"] for a in clip.actors}
    for rows in clip.tracks:
        assert len({r[0] for r in rows}) == len(rows)
        for tid, label, (x1, y1, x2, y2), vis in rows:
            assert ids[tid] == label and label in CLASSES
            assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
            assert 0 < vis <= 1


def test_cast_has_the_promised_workers(clip):
    workers = [a for a in clip.actors if a["label"] == "person"]
    assert 3 <= len(workers) <= 5
    assert any(not w["vest"] for w in workers) and any(not w["hard_hat"] for w in workers)
    assert sum(a["label"] == "forklift" for a in clip.actors) == 1
    assert sum(a["label"] == "pallet" and not a["on_forklift"] for a in clip.actors) >= 2


def test_events_are_well_formed_and_sorted(clip):
    assert clip.events == sorted(clip.events, key=lambda e: e["frame"])
    for e in clip.events:
        assert e["time_s"] == round(e["frame"] / FPS, 1)
        assert f"at {e['time_s']:.1f} s" in e["text"]
        assert e["type"] in {"enter_zone", "exit_zone", "occluded", "reappeared", "enter_frame", "exit_frame"}
        if e["label"] == "person":
            actor = next(a for a in clip.actors if a["id"] == e["track_id"])
            assert (e["vest"], e["hard_hat"]) == (actor["vest"], actor["hard_hat"])


def test_zone_entries_match_the_foot_point(clip):
    entries = [e for e in clip.events if e["type"] == "enter_zone"]
    assert any(not e["vest"] for e in entries), "a worker without a vest walks into the lane"
    for e in entries:
        f, tid = e["frame"], e["track_id"]
        assert _in_zone(clip, f, tid) and not _in_zone(clip, f - 1, tid)
        assert ("without a vest" in e["text"]) == (not e["vest"])


def test_an_occluded_worker_comes_back_under_the_same_id(clip):
    pairs = []
    for e in clip.events:
        if e["type"] == "occluded":
            back = next((r for r in clip.events if r["type"] == "reappeared" and r["track_id"] == e["track_id"]
                         and r["frame"] > e["frame"]), None)
            if back:
                pairs.append((e, back))
    assert pairs
    for hidden, back in pairs:
        tid = hidden["track_id"]
        if hidden["frame"] > 0:  # seen before ...
            assert any(_row(clip, f, tid) for f in range(hidden["frame"]))
        row = _row(clip, back["frame"], tid)
        assert row is not None and row[3] > 0.3  # ... and after, with the same id
        low = [(_row(clip, f, tid) or (0, 0, 0, 0.0))[3] for f in range(hidden["frame"], back["frame"])]
        assert min(low) < 0.25  # mostly or fully hidden in between
    all_ids = {r[0] for rows in clip.tracks for r in rows}
    assert all_ids <= {a["id"] for a in clip.actors}  # nobody comes back under a new id


def test_a_worker_walks_into_view(clip):
    entries = [e for e in clip.events if e["type"] == "enter_frame" and e["label"] == "person"]
    assert entries
    for e in entries:
        f, tid = e["frame"], e["track_id"]
        assert 0 <= clip.feet[f][tid][0] < W
        assert not 0 <= clip.feet[f - 1][tid][0] < W


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_clip_tells_the_stories(seed):
    c = _render(seed)
    types = {(e["type"], e["label"]) for e in c.events}
    assert any(e["type"] == "enter_zone" and not e["vest"] for e in c.events)
    assert ("occluded", "person") in types and ("reappeared", "person") in types
    assert ("enter_frame", "person") in types
    assert any(r[1] == "forklift" for rows in c.tracks for r in rows)


def test_mot_file_parses_and_matches_tracks(clip, written):
    _, paths = written
    lines = paths["gt"].read_text().splitlines()
    expected = [(f + 1, tid, x1, y1, x2 - x1, y2 - y1, 1, CLASSES.index(label) + 1, vis)
                for f, rows in enumerate(clip.tracks) for tid, label, (x1, y1, x2, y2), vis in rows
                if vis >= V.MOT_MIN_VISIBILITY]
    assert len(lines) == len(expected) > 0
    for line, want in zip(lines, expected):
        fields = line.split(",")
        assert len(fields) == 9
        got = [float(v) for v in fields]
        assert got[:8] == [float(v) for v in want[:8]]
        assert got[8] == pytest.approx(want[8], abs=5e-4)


def test_json_files(clip, written):
    _, paths = written
    text = paths["events"].read_text()
    assert json.loads(text) == json.loads(json.dumps(clip.events))
    assert text == json.dumps(clip.events, sort_keys=True, indent=1) + "\n"
    zones = json.loads(paths["zones"].read_text())
    assert zones["forklift_zone"] == [list(p) for p in clip.zones["forklift_zone"]]
    meta = json.loads(paths["meta"].read_text())
    assert (meta["seed"], meta["fps"], meta["frames"], meta["width"], meta["height"]) == (SEED, FPS, 60, W, H)
    assert meta["actors"] == clip.actors


def test_webm_reads_back_with_every_frame(clip, written):
    _, paths = written
    assert paths["video"].stat().st_size < 200_000
    cap = cv2.VideoCapture(str(paths["video"]))
    decoded = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        decoded.append(frame)
    cap.release()
    assert len(decoded) == paths["frames_decoded"] == clip.n_frames
    assert decoded[0].shape == (H, W, 3)
    err = np.mean([np.abs(d.astype(np.int16) - f.astype(np.int16)).mean()
                   for d, f in zip(decoded, clip.frames)])
    assert err < 8  # lossy, but the same pictures


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_webm_bytes_are_reproducible(clip, tmp_path, backend):
    if backend == "pyav" and V.video_backend() != "pyav":
        pytest.skip("PyAV without libvpx-vp9")
    short = V.Clip(clip.seed, clip.fps, clip.width, clip.height, clip.frames[:20], clip.tracks[:20],
                   clip.feet[:20], clip.zones, [], clip.actors)
    a = V.write_clip(short, tmp_path / "a", "x", backend=backend)
    b = V.write_clip(short, tmp_path / "b", "x", backend=backend)
    assert a["frames_decoded"] == 20
    assert a["video"].read_bytes() == b["video"].read_bytes()


def test_appearance_overrides_leave_the_random_stream_alone():
    """Passing the values a worker or forklift would have drawn anyway changes nothing."""
    def draw(fn, seed, **kw):
        p = Painter(240, 320, np.random.default_rng(0))
        ids = iter(range(1, 10))
        info = fn(p, np.random.default_rng(seed), lambda: next(ids), 160.0, 220.0, 150.0, **kw)
        return info, p.canvas.tobytes() + p.owner.tobytes()

    for seed in range(6):
        info, pixels = draw(_worker, seed)
        _, again = draw(_worker, seed, facing=info["facing"], pose=info["pose"],
                        hard_hat=info["hard_hat"], vest=info["vest"])
        assert again == pixels
        info, pixels = draw(_forklift, seed)
        _, again = draw(_forklift, seed, facing=info["facing"], carrying=info["carrying_pallet"])
        assert again == pixels


def test_too_small_a_frame_is_refused():
    with pytest.raises(ValueError):
        V.render_clip(0, seconds=1, width=160, height=90)


@pytest.mark.parametrize("name", sorted(V.CLIPS))
def test_shipped_clip_truth_converts_into_the_video_types(name):
    import jsonschema

    from efsora_helpers.paths import repo_root
    from efsora_helpers.perception.schema import VideoResult, schema_text

    folder = repo_root() / "data" / "safetyscenes" / "video"
    truth = V.clip_truth(name)
    assert VideoResult.model_validate_json(truth.model_dump_json()) == truth
    jsonschema.validate(json.loads(truth.model_dump_json()), json.loads(schema_text(VideoResult, "efsora-video")))
    meta = json.loads((folder / f"{name}_meta.json").read_text())
    assert (truth.n_frames, truth.fps, truth.image_info.width) == (meta["frames"], meta["fps"], meta["width"])
    # every event comes back exactly as the shipped file has it
    events = json.loads((folder / f"{name}_events.json").read_text())
    back = [{"frame": e.frame, "time_s": e.time_s, "track_id": e.track_id, "label": e.label, "type": e.kind,
             "text": e.evidence, **({"zone": e.zone} if e.zone else {}), **e.details} for e in truth.events]
    assert back == events
    # every MOT row is one tracked object in its frame, and the tracks span them
    rows = (folder / f"{name}_gt.txt").read_text().splitlines()
    assert sum(len(f.objects) for f in truth.frames) == len(rows)
    assert [f.frame_index for f in truth.frames] == list(range(meta["frames"]))
    for track in truth.tracks:
        frames = [f.frame_index for f in truth.frames if any(o.track_id == track.track_id for o in f.objects)]
        assert (track.first_frame, track.last_frame) == (frames[0], frames[-1])
    workers = [t for t in truth.tracks if t.label == "person"]
    assert workers and all({"hard_hat", "vest"} <= set(t.attributes) for t in workers)
    assert V.clip_truth(name, frames=False).frames == []
