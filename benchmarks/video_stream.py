"""Benchmark: chapter 5's async pipeline (``efsora_helpers.video.stream``) on the shipped clips with
the shipped detector, keyframing against the no-sampling baseline, in one run.

Configurations (clip by clip, each configuration in turn, so a change in machine load hits them
all alike; the detector loaded once, warm-up calls excluded):

* ``stride 5``: fixed stride 5 before the detector (01_frames: stride 5 caught 142/142 events),
  offline (``realtime=False``: as fast as it goes; backpressure, no drops), batch 1;
* ``stride 5, batch 4``: the same with up to 4 waiting frames per detector call;
* ``every frame``: no sampling (the baseline), batch 1, offline;
* ``live, stride 5`` and ``live, every frame``: ``realtime=True`` (decoding paced at the clip's fps
  like a camera; drop-oldest when the detector queue is full) on the ``--live`` clips (a live run
  takes the clip's duration, so by default only the first two).

Per run: throughput as a ratio to the clip's duration (goal: at least 2x real time on this 2-core
machine with keyframing), frames decoded/detected/dropped, events, per-stage latency (p50/p95 ms),
end-to-end latency (a frame's capture to its events, p50/p95 ms), the largest queue depths. Date,
machine, commit, threads and ``os.getloadavg()`` at start, end and per run are recorded (the machine
is shared: a loaded machine slows every figure). Asserts nothing about speed.

Writes ``benchmarks/results/video_stream.json`` and ``.md`` (``--quick``: ``video_stream_quick``, one
clip, 150 frames). Taught in ``notebooks/video/07_stream.ipynb`` (which plots the shipped results).

Run: OMP_NUM_THREADS=2 nice .venv/bin/python benchmarks/video_stream.py [--live 2] [--clips a b]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {  # label -> StreamConfig arguments
    "stride 5": {"stride": 5},
    "stride 5, batch 4": {"stride": 5, "batch": 4},
    "every frame": {"stride": 1},
    "live, stride 5": {"stride": 5, "realtime": True},
    "live, every frame": {"stride": 1, "realtime": True},
}


def machine() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "commit": commit,
            "python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "threads": os.environ.get("OMP_NUM_THREADS"), "load_start": [round(v, 2) for v in os.getloadavg()]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="*", help="default: every shipped clip")
    ap.add_argument("--live", type=int, default=2, help="run the live configurations on the first N clips")
    ap.add_argument("--configs", nargs="*", choices=list(CONFIGS), help="default: all")
    ap.add_argument("--quick", action="store_true", help="one clip, 150 frames; writes video_stream_quick.*")
    args = ap.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", "2")
    import efsora_helpers as eh

    eh.setup(chapter="video", quiet=True)
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from efsora_helpers.perception.models import Detector
    from efsora_helpers.video import frames as F
    from efsora_helpers.video import stream as S

    info = machine()
    names = args.clips or F.clip_names()
    if args.quick:
        names = names[:1]
    detector = Detector("safetyscenes")
    first = F.read_frames(names[0], [0])[0]
    detector.detect(first)  # warm-up: the first call builds the model's graph
    S.detect_many(detector, [first] * 4, S.CONFIDENCE)
    rows = []
    for i, name in enumerate(names):  # clip by clip, every configuration: a change in load hits them all
        path, zones, _, settings = S.resolve_clip(name)
        for label in args.configs or list(CONFIGS):
            kwargs = dict(CONFIGS[label])
            if kwargs.get("realtime") and i >= args.live:
                continue
            cfg = S.StreamConfig(**kwargs, max_frames=150 if args.quick else None)
            load = os.getloadavg()[0]
            r = S.analyze(path, detector, zones=zones, config=cfg, name=name, event_settings=settings)
            row = {"config": label, "clip": name, "load_1min": round(load, 2), **r.stats.summary()}
            rows.append(row)
            print(f"{label:<18} {name:<20} {r.stats.line()}  (load {load:.1f})", file=sys.stderr, flush=True)
    info["load_end"] = [round(v, 2) for v in os.getloadavg()]
    totals = {}
    for label in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == label]
        wall, dur = sum(r["wall_s"] for r in mine), sum(r["duration_s"] for r in mine)
        totals[label] = {"clips": len(mine), "frames": sum(r["decoded"] for r in mine),
                         "detected": sum(r["detected"] for r in mine), "dropped": sum(r["dropped"] for r in mine),
                         "events": sum(r["events"] for r in mine), "wall_s": round(wall, 2),
                         "duration_s": round(dur, 2), "realtime_ratio": round(dur / wall, 3),
                         "detect_p50_ms": round(sorted(r["detect_p50_ms"] for r in mine)[len(mine) // 2], 1),
                         "e2e_p50_ms_median": round(sorted(r["e2e_p50_ms"] for r in mine)[len(mine) // 2], 1),
                         "e2e_p95_ms_max": max(r["e2e_p95_ms"] for r in mine)}
    out = ROOT / "benchmarks" / "results" / ("video_stream_quick" if args.quick else "video_stream")
    out.with_suffix(".json").write_text(json.dumps({"machine": info, "totals": totals, "runs": rows}, indent=2) + "\n")
    lines = [f"# Video stream benchmark ({info['date_utc']} UTC, commit {info['commit']})", "",
             f"{info['cpus']} CPUs, OMP_NUM_THREADS={info['threads']}, load average at start "
             f"{info['load_start']}, at end {info['load_end']} (a shared machine: every figure is slower under load).",
             f"Shipped detector (Detector('safetyscenes')), {len(names)} clips; live configurations on "
             f"{min(args.live, len(names))}. Command: `OMP_NUM_THREADS={info['threads']} nice .venv/bin/python "
             f"benchmarks/video_stream.py{' --quick' if args.quick else ''}`.", "",
             "| config | clips | frames | detected | dropped | events | wall s | clip s | x real time | detect p50 ms | "
             "e2e p50 ms (median clip) | e2e p95 ms (worst clip) |", "|" + " --- |" * 12]
    for label, t in totals.items():
        lines.append(f"| {label} | {t['clips']} | {t['frames']} | {t['detected']} | {t['dropped']} | {t['events']} | "
                     f"{t['wall_s']:.1f} | {t['duration_s']:.1f} | {t['realtime_ratio']:.2f} | {t['detect_p50_ms']:.0f} | "
                     f"{t['e2e_p50_ms_median']:.0f} | {t['e2e_p95_ms_max']:.0f} |")
    lines += ["", "Per clip and stage: the JSON (`runs`: p50/p95 ms of decode, detect, track, events, alerts; "
              "max queue depths; drops)."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
