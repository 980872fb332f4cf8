"""``efsora video ...``: chapter 5's pipeline (:mod:`.stream`) on the command line.

* ``efsora video analyze CLIP [--zones Z.json] [--out events.json] [--annotated out.mp4] [--stride N]``:
  the whole video as fast as it goes, with a progress bar; the tracks and events as the schema's
  ``VideoResult`` JSON (to ``--out``, or stdout); ``--annotated`` also writes the video with boxes,
  zones and event banners drawn and heads blurred (:mod:`.annotate`).
* ``efsora video stream CLIP [--realtime] [--stride N]``: the live pipeline, alerts printed as they
  fire, and one stats line at the end.

``CLIP`` is a shipped clip's name (``busy_aisle``; its zones and floor model come with it) or a path
to any video (zones from ``--zones``, else none). Taught in ``notebooks/video/07_stream.ipynb``.
A missing, corrupt or truncated file ends with one line on stderr and exit code 2
(``efsora_helpers.cli.main``), never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

ANNOTATED_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm")  # what annotate.VideoWriter writes


def add_commands(sub) -> None:
    p = sub.add_parser("video", help="chapter 5: analyze a video (tracks, events) or run the live pipeline")
    s = p.add_subparsers(dest="action", required=True)
    a = s.add_parser("analyze", help="tracks and events of a video as VideoResult JSON, with a progress bar")
    _common(a)
    a.add_argument("--out", type=Path, help="write the VideoResult JSON here (default: stdout)")
    a.add_argument("--annotated", type=Path, help="also write an annotated video (.mp4 or .webm), heads blurred")
    a.set_defaults(func=_analyze)
    st = s.add_parser("stream", help="the live pipeline: alerts as they fire, then one stats line")
    _common(st)
    st.add_argument("--realtime", action="store_true",
                    help="pace decoding at the video's fps like a camera (frames dropped if detection falls behind)")
    st.set_defaults(func=_stream)


def _common(p) -> None:
    p.add_argument("clip", help="a shipped clip's name (efsora_helpers.video.frames.clip_names) or a video file")
    p.add_argument("--zones", type=Path, help="zones JSON {name: [[x, y], ...]} (default: the shipped clip's, else none)")
    p.add_argument("--stride", type=int, default=5,
                   help="detect on every N-th frame (default 5: caught every event in 01_frames)")
    p.add_argument("--batch", type=int, default=1, help="frames per detector call, at most (default 1)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames (default: the whole video)")


def _prepare(args):
    from ..env import setup
    from .stream import StreamConfig, VideoError, open_video, resolve_clip

    if args.stride < 1 or args.batch < 1 or (args.max_frames is not None and args.max_frames < 1):
        raise ValueError("--stride, --batch and --max-frames must be at least 1")
    path, zones, name, settings = resolve_clip(args.clip, args.zones)
    container, stream, fps, _, _ = open_video(path)  # fail on a bad file before loading the model
    total = round((container.duration or 0) / 1e6 * fps) or None
    container.close()
    if getattr(args, "annotated", None) is not None and args.annotated.suffix.lower() not in ANNOTATED_SUFFIXES:
        raise VideoError(f"{args.annotated}: use one of {', '.join(ANNOTATED_SUFFIXES)} for --annotated")
    setup(quiet=True)
    cfg = StreamConfig(stride=args.stride, batch=args.batch, realtime=getattr(args, "realtime", False),
                       keep_frames=getattr(args, "annotated", None) is not None, max_frames=args.max_frames)
    if args.max_frames is not None:
        total = min(total or args.max_frames, args.max_frames)
    return path, zones, name, settings, cfg, total


def _analyze(args) -> int:
    from tqdm.auto import tqdm

    from .stream import analyze

    path, zones, name, settings, cfg, total = _prepare(args)
    with tqdm(total=total, unit="frame", desc=name, disable=None, file=sys.stderr) as bar:
        result = analyze(path, zones=zones, config=cfg, name=name, event_settings=settings,
                         on_frame=lambda i: bar.update())
    # the same JSON with or without --annotated: tracks and events (the kept frames only feed the drawing)
    text = result.video.model_copy(update={"frames": []}).model_dump_json(indent=2)
    if args.annotated is not None:
        n = write_annotated(path, result.video, args.annotated)
        print(f"wrote {args.annotated} ({n} frames, heads blurred)")
    if args.out is None:
        print(text)
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(f"wrote {args.out}: {len(result.video.tracks)} tracks, {len(result.video.events)} events; "
          f"{result.stats.line()}")
    return 0


def _stream(args) -> int:
    from .alerts import AlertEngine
    from .stream import analyze

    path, zones, name, settings, cfg, _ = _prepare(args)

    def show(alert) -> None:
        when = alert.resolved_time_s if alert.status == "resolved" else alert.fired_time_s
        print(f"{when if when is not None else alert.last_time_s:7.1f} s  {alert.status:<8} {alert.severity:<8} "
              f"{alert.description or alert.rule} (track {alert.track_id})", flush=True)

    result = analyze(path, zones=zones, config=cfg, name=name, event_settings=settings,
                     alert_engine=AlertEngine(source=name), on_alert=show)
    print(result.stats.line())
    return 0


def write_annotated(path, video, out: Path) -> int:
    """The video again, each frame with the boxes of the latest processed frame (the detector saw
    only every stride-th one), the zones, and banners for events of the last second; heads blurred
    (:func:`.annotate.draw`). Returns the number of frames written."""
    from .annotate import VideoWriter, draw
    from .stream import iter_frames, open_video

    by_frame = {f.frame_index: f.objects for f in video.frames}
    container, stream, fps, width, height = open_video(path)
    boxes: list = []
    try:
        with VideoWriter(out, fps, (width, height)) as writer:
            for i, image in enumerate(iter_frames(container, stream, path)):
                if i >= video.n_frames:
                    break
                if i in by_frame:
                    boxes = [(o.track_id, o.label, *o.bbox, o.confidence) for o in by_frame[i]]
                recent = [e for e in video.events if i - fps <= e.frame <= i]
                writer.write(draw(image, boxes, zones=video.zones, events=recent))
            return writer.frames
    finally:
        container.close()


def main(argv=None) -> int:
    from ..cli import main as efsora_main

    return efsora_main(["video", *(argv or sys.argv[1:])])


__all__ = ["add_commands", "write_annotated", "main"]
