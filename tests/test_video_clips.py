"""The long SafetyScenes clips of chapter 5 (data/video/): the promised stories are in the files,
the files match their manifest, and any frame range re-renders byte for byte."""

import collections
import json

import numpy as np
import pytest

from efsora_helpers.assets import sha256_of
from efsora_helpers.safetyscenes import video as V
from efsora_helpers.vocabulary import EventKind, ObjectClass

ROOT = V.stories_root()
NAMES = list(V.STORIES)


def _events(name):
    return json.loads((ROOT / f"{name}_events.json").read_text())


def _meta(name):
    return json.loads((ROOT / f"{name}_meta.json").read_text())


def test_six_clips_of_30_to_60_seconds_ship_with_their_truth():
    assert len(NAMES) >= 6
    for name in NAMES:
        meta = _meta(name)
        assert (meta["width"], meta["height"], meta["fps"]) == (640, 360, 15)
        assert 30 <= meta["seconds"] <= 60 and meta["frames"] == round(meta["seconds"] * 15)
        for suffix in (".webm", "_gt.txt", "_events.json", "_zones.json", "_frames.txt"):
            assert (ROOT / f"{name}{suffix}").is_file(), name + suffix
        assert len((ROOT / f"{name}_frames.txt").read_text().splitlines()) == meta["frames"]


def test_files_match_the_manifest_and_stay_small():
    manifest = json.loads((ROOT / "manifest.json").read_text())
    on_disk = {p.name for p in ROOT.iterdir() if p.is_file()} - {"manifest.json"}
    assert on_disk == set(manifest)
    for name, entry in manifest.items():
        assert sha256_of(ROOT / name)[0] == entry["sha256"], name
    total = sum(e["bytes"] for e in manifest.values())
    assert total < 12e6, f"{total / 1e6:.1f} MB"


def test_the_stories_are_in_the_timelines():
    kinds = collections.Counter()
    occluders = set()
    left_and_came_back = dwell = 0
    for name in NAMES:
        events = _events(name)
        labels = {a["id"]: a["label"] for a in _meta(name)["actors"]}
        kinds.update(e["type"] for e in events)
        occluders |= {labels[e["occluder"]] for e in events if e["type"] == EventKind.OCCLUDED and e["occluder"]}
        for e in events:
            later = [x for x in events if x["track_id"] == e["track_id"] and x["frame"] > e["frame"]]
            if e["type"] == EventKind.EXIT_FRAME and any(x["type"] == EventKind.ENTER_FRAME for x in later):
                left_and_came_back += 1
            if e["type"] == EventKind.ENTER_ZONE:
                out = next((x for x in later if x["type"] == EventKind.EXIT_ZONE), None)
                if out and out["time_s"] - e["time_s"] >= 4:
                    dwell += 1
    for kind in (EventKind.PUT_ON_PPE, EventKind.TAKE_OFF_PPE, EventKind.NEAR_MISS, EventKind.ENTER_ZONE,
                 EventKind.EXIT_ZONE, EventKind.OCCLUDED, EventKind.REAPPEARED):
        assert kinds[kind] >= 2, kind
    # hidden behind a pallet stack, a forklift and another worker (paths crossing)
    assert {ObjectClass.PALLET, ObjectClass.FORKLIFT, ObjectClass.PERSON} <= occluders
    assert left_and_came_back >= 3 and dwell >= 3


def test_vest_flags_follow_the_ppe_events():
    for name in NAMES:
        worn = {a["id"]: a.get(ObjectClass.VEST) for a in _meta(name)["actors"] if a["label"] == ObjectClass.PERSON}
        for e in _events(name):
            if e["type"] in (EventKind.PUT_ON_PPE, EventKind.TAKE_OFF_PPE):
                assert worn[e["track_id"]] != (e["type"] == EventKind.PUT_ON_PPE)
                worn[e["track_id"]] = e["type"] == EventKind.PUT_ON_PPE
            if e["label"] == ObjectClass.PERSON:
                assert e["vest"] == worn[e["track_id"]], e["text"]


def test_a_frame_range_rerenders_byte_for_byte():
    name = "vest_off_near_miss"
    frames = range(118, 122)  # the vest comes off at 8 s = frame 120
    clip = V.render_story(name, frames=frames)
    digests = (ROOT / f"{name}_frames.txt").read_text().splitlines()
    assert [f"{f},{V.frame_digest(img)}" for f, img in zip(frames, clip.frames)] == [digests[f] for f in frames]
    shipped = [line for line in (ROOT / f"{name}_gt.txt").read_text().splitlines()
               if int(line.split(",")[0]) - 1 in frames]
    # mot_lines numbers frames from the range's start; renumber to the clip's frames
    rows = [line.split(",", 1) for line in clip.mot_lines()]
    assert [f"{int(f) + frames.start},{rest}" for f, rest in rows] == shipped
    assert clip.events == []  # events need the whole clip


def test_vest_change_keeps_the_rest_of_the_worker():
    name = "vest_off_near_miss"
    clip = V.render_story(name, frames=range(119, 121))
    before, after = (np.asarray(f, np.int16) for f in clip.frames)
    changed = np.abs(after - before).max(axis=2) > 40
    ys, xs = np.nonzero(changed)
    assert 50 < len(ys) < 3000  # the vest's pixels, not the whole frame
    box = next(r[2] for r in clip.tracks[0] if r[0] == 1)
    assert box[0] - 2 <= xs.min() and xs.max() <= box[2] + 2


def test_long_clip_truth_loads_into_the_video_types():
    truth = V.clip_truth("forklift_near_miss", folder=ROOT, frames=False)
    assert truth.fps == 15 and truth.n_frames == 540
    assert any(e.kind == EventKind.NEAR_MISS and e.details["forklift_id"] for e in truth.events)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["forklift_near_miss"])
def test_a_whole_clip_regenerates_byte_for_byte(name, tmp_path):
    V.write_stories(tmp_path, [name], progress=False)
    manifest = json.loads((ROOT / "manifest.json").read_text())
    for path in tmp_path.glob(f"{name}*"):
        assert sha256_of(path)[0] == manifest[path.name]["sha256"], path.name
