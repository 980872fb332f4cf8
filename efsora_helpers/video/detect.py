"""The shipped detector on every frame of the long clips, cached as MOTChallenge detection files.

Trackers are compared on the same detections (MOTChallenge's "public detections" protocol), and a
notebook on two CPU cores cannot afford the detector on 3,765 frames (about 80 ms each here): the
tracking notebook of chapter 5 reads ``data/video/detections/NAME_det.txt``, written by
``python -m efsora_helpers.video.detect`` (minutes, once). Rows:
``frame,-1,x,y,w,h,confidence,class,-1`` (frame 1-based, x/y 0-based pixels, class 1-based into the
detector's classes, as in the ground-truth files).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .frames import clip_names, clip_path, clips_root

CONFIDENCE = 0.1  # keep low-score boxes: ByteTrack's second association uses them


def detections_root() -> Path:
    return clips_root() / "detections"


def detect_clip(name: str, detector=None, confidence: float = CONFIDENCE, progress: bool = True) -> np.ndarray:
    """Run the detector on every frame of clip ``name``; returns the detection rows (see above)."""
    import av
    from tqdm.auto import tqdm

    from ..perception.models import Detector

    detector = detector or Detector("safetyscenes")
    index = {v: k for k, v in detector.names.items()}
    rows = []
    with av.open(str(clip_path(name))) as c:
        stream = c.streams.video[0]
        for f, frame in enumerate(tqdm(c.decode(stream), total=stream.frames or None, desc=name, disable=not progress)):
            for d in detector.detect(frame.to_ndarray(format="bgr24"), confidence=confidence):
                x1, y1, x2, y2 = d.bbox
                rows.append((f + 1, -1, x1, y1, x2 - x1, y2 - y1, d.confidence, index[d.label] + 1, -1))
    return np.array(rows, float).reshape(-1, 9)


def write_detections(names=None, out_dir=None) -> dict[str, float]:
    """Write ``NAME_det.txt`` for each clip; returns the seconds each took."""
    from ..perception.models import Detector

    out = Path(out_dir) if out_dir else detections_root()
    out.mkdir(parents=True, exist_ok=True)
    detector = Detector("safetyscenes")
    took = {}
    for name in names or clip_names():
        start = time.perf_counter()
        rows = detect_clip(name, detector)
        lines = [f"{int(r[0])},-1,{r[2]:.1f},{r[3]:.1f},{r[4]:.1f},{r[5]:.1f},{r[6]:.4f},{int(r[7])},-1" for r in rows]
        (out / f"{name}_det.txt").write_text("".join(line + "\n" for line in lines))
        took[name] = time.perf_counter() - start
        print(f"{name}: {len(rows)} detections in {took[name]:.0f} s", flush=True)
    return took


def read_detections(name: str, min_confidence: float = 0.0) -> np.ndarray:
    rows = np.loadtxt(detections_root() / f"{name}_det.txt", delimiter=",", ndmin=2)
    return rows[rows[:, 6] >= min_confidence]


if __name__ == "__main__":
    from ..env import setup

    setup(quiet=True)
    write_detections(sys.argv[1:] or None)
