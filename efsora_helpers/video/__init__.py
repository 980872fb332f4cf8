"""Chapter 5, the Video Analytics Pipeline: frames and sampling, tracking scored with MOTA, IDF1 and
HOTA, track-level events, alerts, grounded temporal summaries, an async stream with backpressure,
and privacy, measured against the SafetyScenes long clips' exact ground truth and timelines.

The modules, and the notebook in ``notebooks/video/`` that teaches each:

* :mod:`.frames`: the shipped clips, their ground truth, timelines and zones, decoding and its
  cost (``01_frames``).
* :mod:`.sampling`: fixed stride, keyframes on change and a motion gate, scored as frames sent to
  the detector against events caught and how late (``01_frames``).
* :mod:`.plots`: a clip's event timeline and frames with their boxes (``01_frames``, ``04_events``).
* :mod:`.detect`: the shipped detector on every frame, cached as MOTChallenge detection files for
  the notebooks (``02_tracking``; run offline with ``python -m efsora_helpers.video.detect``).
* :mod:`.track`: ByteTrack, SORT, OC-SORT and BoT-SORT from the ``trackers`` package on those
  detections (``02_tracking``).
* :mod:`.metrics`: MOTA, IDF1 and HOTA from their definitions, checked against ``motmetrics`` and
  TrackEval (``02_tracking``).
* :mod:`.association`: IoU cost, gated Hungarian matching, a Kalman filter on the box and
  ByteTrack's two stages, as the book's ``MiniByteTrack`` (``03_association``).
* :mod:`.events`: :class:`~.events.EventDetector` (zone entry and exit, dwell, a vote over frames
  for the vest, near misses on the floor) and scoring against the generator's timeline
  (``04_events``).
* :mod:`.alerts`: rules with severities, debounce, deduplication, and sinks (a JSONL log, a
  webhook, chapter 3's agent for incident reports) (``05_alerts``).
* :mod:`.summary`: an LLM summary whose every claim cites event ids, the checker, a template
  baseline and timeline compression (``06_summary``).
* :mod:`.stream`: asyncio stages decode -> detect -> track -> events -> alerts with bounded queues,
  backpressure and a drop policy; :func:`.stream.analyze` is the entry point (``07_stream``;
  measured by ``benchmarks/video_stream.py``).
* :mod:`.cli`: ``efsora video analyze`` and ``efsora video stream`` over :mod:`.stream`
  (``07_stream``).
* :mod:`.privacy`: head regions from person boxes, blurring, blur-after-detection, alert crops and
  the retention policy (``08_privacy``).
* :mod:`.annotate`: boxes, ids, zones and event banners drawn with heads blurred, written as
  MP4/WebM or the book's GIF (``08_privacy``; ``efsora video analyze --annotated``).

The clips are rendered by :mod:`efsora_helpers.safetyscenes.video` (``efsora scenes video``) into
``data/video/``. The chapter's landing page is ``book/video/overview.md``.
"""
