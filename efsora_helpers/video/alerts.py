"""Alerts from track events: rules -> alerts with a severity, debounced and deduplicated, sent to sinks.

Taught in ``notebooks/video/05_alerts.ipynb``. The input is the schema's
:class:`~efsora_helpers.perception.schema.TrackEvent` stream (the generator's timeline,
:func:`.frames.truth_track_events`, or the pipeline's own events), one event at a time.

* An :class:`AlertRule` says which events break it, given what the engine knows about the track
  (in the zone? vest on?), how severe that is, and how long a condition must last before anyone is
  paged (``min_duration_s``: the **debounce**; instantaneous events such as a near miss fire at once).
* :class:`AlertEngine` keeps one alert per (rule, track, zone). A matching event within
  ``cooldown_s`` of the alert's last one is folded into it (``count`` += 1: the **deduplication**);
  after ``cooldown_s`` with the condition clear, the alert resolves. Like Prometheus' Alertmanager,
  each alert is sent twice: ``firing`` (once, when it passes its debounce) and ``resolved`` (with its
  final count and times). A condition that clears before its debounce never fires: it is kept in
  ``engine.suppressed``, so every event that matched a rule is in exactly one alert or one
  suppressed candidate (:meth:`AlertEngine.accounting`).
* Sinks receive the notifications whose severity reaches their ``min_severity``:
  :class:`JsonlSink` (append, one flushed line each), :class:`WebhookSink` (JSON over HTTP POST with
  retries, exponential backoff and a dead-letter file), :class:`IncidentSink` (chapter 3's agent
  files an incident report; a deterministic report stands in when the agent's is poor or the agent's
  budget is spent, and the incident says which one was used). :func:`webhook_receiver` is a real
  loopback HTTP server (``http.server``) that records what it got.

**Untrusted text.** An event's ``evidence`` sentence comes from upstream (a generator here; in a real
site a tracker, OCR or an operator's note). It is kept in the alert for people to read, but never
reaches the language model: the agent's task is built only from structured fields (vocabulary enums,
integers, seconds), see :func:`incident_task`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

from pydantic import BaseModel, Field

from ..perception.schema import TrackEvent
from ..vocabulary import PPE, EventKind, ObjectClass, Rule, Zone, phrase

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
Status = Literal["firing", "resolved"]


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


# --- what the engine knows about a track ----------------------------------------------------------

@dataclass
class TrackState:
    """What the events so far say about one track. ``vest`` is None until an event tells. A worker
    hidden behind a rack is still in view (``visible``): occlusion pauses the camera's evidence,
    not the worker's situation; only leaving the frame ends it."""

    label: str = ""
    visible: bool = True
    in_zone: set = field(default_factory=set)
    vest: bool | None = None
    hard_hat: bool | None = None

    def apply(self, e: TrackEvent) -> None:
        self.label = e.label
        for item in PPE:  # the generator's events carry the worker's PPE; the fields are named like the items
            if isinstance(e.details.get(item), bool):
                setattr(self, item.value, e.details[item])
        k = e.kind
        if k == EventKind.ENTER_ZONE and e.zone:
            self.in_zone.add(e.zone)
        elif k == EventKind.EXIT_ZONE and e.zone:
            self.in_zone.discard(e.zone)
        elif k == EventKind.EXIT_FRAME:
            # Out of view: nothing can be said about the zone; a return into it emits enter_zone again.
            self.visible, self.in_zone = False, set()
        elif k in (EventKind.ENTER_FRAME, EventKind.REAPPEARED):
            self.visible = True
        elif k in (EventKind.PUT_ON_PPE, EventKind.TAKE_OFF_PPE) and e.details.get("item", ObjectClass.VEST) == ObjectClass.VEST:
            self.vest = k == EventKind.PUT_ON_PPE
        elif k in (EventKind.VIOLATION_START, EventKind.VIOLATION_END):
            broken = k == EventKind.VIOLATION_START
            if e.rule == Rule.NO_VEST:
                self.vest = not broken
            elif e.rule == Rule.NO_HARD_HAT:
                self.hard_hat = not broken
            elif e.rule == Rule.IN_FORKLIFT_ZONE:
                (self.in_zone.add if broken else self.in_zone.discard)(Zone.FORKLIFT_ZONE)


# --- rules ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlertRule:
    """One rule: ``matches(event, state)`` (state after the event) says the event breaks it;
    ``holds(state)`` says the condition still stands (None: an instantaneous rule, such as a near miss,
    which fires at once and never waits for a debounce). ``zone``: the zone the alert is about."""

    name: str  # a vocabulary Rule, or an EventKind for an event-rule (near_miss)
    severity: Severity
    description: str
    matches: Callable[[TrackEvent, TrackState], bool]
    holds: Callable[[TrackState], bool] | None = None
    zone: str | None = None
    min_duration_s: float | None = None  # None: the engine's debounce_s (0 for instantaneous rules)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.zone}" if self.zone else self.name


_SEEN = (EventKind.ENTER_FRAME, EventKind.REAPPEARED, EventKind.ENTER_ZONE, EventKind.EXIT_ZONE,
         EventKind.TAKE_OFF_PPE, EventKind.VIOLATION_START)


def _is_person(e: TrackEvent) -> bool:
    return e.label == ObjectClass.PERSON


def _no_vest_in(state: TrackState) -> bool:
    return state.visible and state.vest is False and Zone.FORKLIFT_ZONE in state.in_zone


def _no_vest_out(state: TrackState) -> bool:
    return state.visible and state.vest is False and Zone.FORKLIFT_ZONE not in state.in_zone


#: The book's rules: a worker without a vest in the forklift zone and a near miss page someone
#: (critical); no vest elsewhere is a warning; entering the zone properly dressed is logged (info).
DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule(Rule.NO_VEST, "critical", "a worker without a vest in the forklift zone",
              lambda e, s: _is_person(e) and e.kind in _SEEN and _no_vest_in(s), _no_vest_in, zone=Zone.FORKLIFT_ZONE),
    AlertRule(EventKind.NEAR_MISS, "critical", "a worker close to a moving forklift",
              lambda e, s: _is_person(e) and e.kind == EventKind.NEAR_MISS),
    AlertRule(Rule.NO_VEST, "warning", "a worker without a vest outside the forklift zone",
              lambda e, s: _is_person(e) and e.kind in _SEEN and _no_vest_out(s), _no_vest_out),
    AlertRule(EventKind.ENTER_ZONE, "info", "a worker enters the forklift zone wearing a vest",
              lambda e, s: _is_person(e) and e.kind == EventKind.ENTER_ZONE and e.zone == Zone.FORKLIFT_ZONE
              and s.vest is True, zone=Zone.FORKLIFT_ZONE),
)


# --- alerts ---------------------------------------------------------------------------------------

class Alert(BaseModel):
    """One alert: a rule broken by one track, with every event folded into it. Sinks receive copies
    (a notification) when it fires and when it resolves."""

    id: str = Field(description="stable: source, rule, zone, track and first frame hashed")
    source: str = ""
    rule: str = Field(description="a vocabulary Rule (no_vest) or event kind (near_miss, enter_zone)")
    severity: Severity
    description: str = ""
    status: Status = "firing"
    track_id: int
    label: str
    zone: str | None = None
    first_frame: int
    last_frame: int
    first_time_s: float
    last_time_s: float
    fired_time_s: float | None = Field(None, description="when it passed its debounce and was sent")
    resolved_time_s: float | None = None
    count: int = Field(1, description="matching events folded into this alert (1 + deduplicated repeats)")
    event_frames: list[int] = Field(default_factory=list)
    event_kinds: list[str] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list,
                                description="the events' sentences: UNTRUSTED text, for people; never sent to an LLM")
    details: dict[str, bool | int | float | str | None] = Field(
        default_factory=dict, description="structured facts from the first event (forklift_id, min_distance_m, ...)")

    def notification(self) -> dict:
        """What a sink receives: the alert as JSON-ready data."""
        return self.model_dump(mode="json")


def alert_id(source: str, rule: AlertRule, track_id: int, first_frame: int) -> str:
    raw = f"{source}|{rule.name}|{rule.severity}|{rule.zone}|{track_id}|{first_frame}"
    return hashlib.sha1(raw.encode()).hexdigest()[:12]


@dataclass
class _Open:
    alert: Alert
    rule: AlertRule
    fired: bool = False
    last_trigger_s: float = 0.0


class AlertEngine:
    """Rules -> alerts, online: :meth:`handle` one event at a time (in time order), :meth:`tick` the
    clock (a live pipeline calls it every frame so a debounced alert fires on time, not at the next
    event), :meth:`flush` at the end (resolves everything open). Each returns the notifications it
    sent (``Alert`` copies with ``status`` firing or resolved).

    ``cooldown_s``: a repeat within this many seconds of the alert's last matching event is folded in;
    an alert resolves this long after its last match once its condition is clear.
    ``debounce_s``: how long a condition rule (no vest in the zone) must hold before it fires.
    """

    def __init__(self, rules: Iterable[AlertRule] = DEFAULT_RULES, sinks: Iterable = (), cooldown_s: float = 10.0,
                 debounce_s: float = 0.5, source: str = "", dedup: bool = True):
        self.rules = tuple(rules)
        self.sinks = list(sinks)
        self.cooldown_s = float(cooldown_s)
        self.debounce_s = float(debounce_s)
        self.source = source
        self.dedup = dedup
        self.tracks: dict[int, TrackState] = {}
        self.open: dict[tuple, _Open] = {}
        self.alerts: list[Alert] = []  # every alert that fired, live objects (final counts after flush)
        self.suppressed: list[Alert] = []  # candidates whose condition cleared before their debounce
        self.matched: list[tuple[str, str, int, int]] = []  # (rule, severity, track, frame) of every matching event
        self.sent: list[Alert] = []  # every notification, in order
        self.sink_errors: list[str] = []
        self.now = 0.0

    # -- the online part --
    def handle(self, event: TrackEvent) -> list[Alert]:
        out = self.tick(event.time_s)
        state = self.tracks.setdefault(event.track_id, TrackState())
        state.apply(event)
        for rule in self.rules:
            if rule.matches(event, state):
                out += self._match(rule, event)
        return out

    def tick(self, time_s: float) -> list[Alert]:
        """Advance the clock: fire alerts whose condition has held for its debounce, resolve quiet ones."""
        self.now = max(self.now, float(time_s))
        out: list[Alert] = []
        for key, o in list(self.open.items()):
            holds = self._holds(o)
            if not o.fired and holds and self.now - o.last_trigger_s >= self._debounce(o.rule):
                out += self._fire(o)
            if self.now - o.alert.last_time_s >= self.cooldown_s and not holds:
                out += self._close(key, o)
        return out

    def flush(self) -> list[Alert]:
        """End of the stream: an alert still waiting for its debounce fires (the stream ended, the
        condition did not clear), then everything open resolves."""
        out: list[Alert] = []
        for key, o in list(self.open.items()):
            if not o.fired and self._holds(o):
                out += self._fire(o)
            out += self._close(key, o)
        return out

    def run(self, events: Iterable[TrackEvent], fps: float | None = None, end_frame: int | None = None) -> list[Alert]:
        """Every event in time order, ticking the clock at every frame in between (``fps``; None: only
        at events) and up to ``end_frame``, then :meth:`flush`."""
        out: list[Alert] = []
        frame = 0
        for e in sorted(events, key=lambda e: (e.frame, e.track_id)):
            while fps and frame < e.frame:
                out += self.tick(round(frame / fps, 4))
                frame += 1
            out += self.handle(e)
        while fps and end_frame is not None and frame < end_frame:
            out += self.tick(round(frame / fps, 4))
            frame += 1
        return out + self.flush()

    # -- bookkeeping --
    def _debounce(self, rule: AlertRule) -> float:
        if rule.holds is None:
            return 0.0
        return self.debounce_s if rule.min_duration_s is None else rule.min_duration_s

    def _holds(self, o: _Open) -> bool:
        if o.rule.holds is None:
            return False
        return o.rule.holds(self.tracks.get(o.alert.track_id, TrackState()))

    def _match(self, rule: AlertRule, e: TrackEvent) -> list[Alert]:
        key = (rule.key, rule.severity, e.track_id)
        self.matched.append((str(rule.name), rule.severity, e.track_id, e.frame))
        o = self.open.get(key) if self.dedup else None
        if o is not None and e.time_s - o.alert.last_time_s <= self.cooldown_s:
            a = o.alert
            a.count += 1
            # The pipeline dates an event to the frame it started, after it became certain: late
            # arrivals may be older than the alert's last event.
            a.last_frame, a.last_time_s = max(a.last_frame, e.frame), max(a.last_time_s, e.time_s)
            a.event_frames.append(e.frame)
            a.event_kinds.append(str(e.kind))
            a.evidence.append(e.evidence)
            o.last_trigger_s = max(o.last_trigger_s, e.time_s)
            return self._maybe_fire(o)
        if o is not None:  # too late to fold in: close the old one, start a new alert
            self._close(key, o)
        a = Alert(id=alert_id(self.source, rule, e.track_id, e.frame), source=self.source, rule=str(rule.name),
                  severity=rule.severity, description=rule.description, track_id=e.track_id, label=e.label,
                  zone=rule.zone, first_frame=e.frame, last_frame=e.frame, first_time_s=e.time_s,
                  last_time_s=e.time_s, event_frames=[e.frame], event_kinds=[str(e.kind)], evidence=[e.evidence],
                  details={k: v for k, v in e.details.items() if isinstance(v, (bool, int, float)) or v is None})
        o = _Open(a, rule, last_trigger_s=e.time_s)
        if self.dedup:
            self.open[key] = o
        else:  # no dedup: every matching event is its own alert, closed at once after firing
            return self._fire(o) + self._close(None, o)
        return self._maybe_fire(o)

    def _maybe_fire(self, o: _Open) -> list[Alert]:
        if not o.fired and self._debounce(o.rule) <= 0:
            return self._fire(o)
        return []

    def _fire(self, o: _Open) -> list[Alert]:
        o.fired = True
        o.alert.fired_time_s = round(max(self.now, o.alert.last_time_s), 4)
        self.alerts.append(o.alert)
        return [self._send(o.alert)]

    def _close(self, key, o: _Open) -> list[Alert]:
        if key is not None:
            self.open.pop(key, None)
        if not o.fired:
            self.suppressed.append(o.alert)
            return []
        o.alert.status = "resolved"
        o.alert.resolved_time_s = round(max(self.now, o.alert.last_time_s), 4)
        return [self._send(o.alert)]

    def _send(self, alert: Alert) -> Alert:
        note = alert.model_copy(deep=True)
        self.sent.append(note)
        for sink in self.sinks:
            if severity_rank(note.severity) < severity_rank(getattr(sink, "min_severity", "info")):
                continue
            try:
                sink.send(note)
            except Exception as exc:  # noqa: BLE001 - one broken sink must not stop the others or the engine
                self.sink_errors.append(f"{type(sink).__name__}: {type(exc).__name__}: {exc}")
        return note

    def accounting(self) -> dict:
        """The check that nothing was lost: the events in fired alerts and suppressed candidates are
        exactly the events that matched a rule (as multisets of (rule, severity, track, frame))."""
        from collections import Counter

        folded = Counter((a.rule, a.severity, a.track_id, f) for a in self.alerts + self.suppressed for f in a.event_frames)
        return {"matching_events": len(self.matched), "alerts": len(self.alerts), "suppressed": len(self.suppressed),
                "events_in_alerts": sum(a.count for a in self.alerts),
                "events_in_suppressed": sum(a.count for a in self.suppressed),
                "balanced": folded == Counter(self.matched)
                and sum(a.count for a in self.alerts + self.suppressed) == len(self.matched)}


def alert_stream(events: Iterable[TrackEvent], fps: float = 15.0, end_frame: int | None = None,
                 **engine_kwargs) -> AlertEngine:
    """An :class:`AlertEngine` run over ``events`` (ticking every frame), returned for its alerts."""
    engine = AlertEngine(**engine_kwargs)
    engine.run(events, fps=fps, end_frame=end_frame)
    return engine


# --- sinks ----------------------------------------------------------------------------------------

class JsonlSink:
    """Append each notification as one JSON line, flushed (and fsync'ed) before ``send`` returns: a
    crash after the call loses nothing that was sent."""

    def __init__(self, path: str | Path, min_severity: Severity = "info", fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.min_severity = min_severity
        self.fsync = fsync
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        line = json.dumps(alert.notification(), sort_keys=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def delivery_key(note: dict) -> str:
    """The idempotency key of one notification: a receiver that sees it twice (a retry after a lost
    reply) keeps one."""
    return f"{note['id']}:{note['status']}"


class WebhookSink:
    """POST each notification as JSON to ``url``. A failure (connection refused, timeout, a 5xx) is
    retried ``retries`` times with exponential backoff (``backoff_s``, doubled each time); when all
    fail, the notification goes to the ``dead_letter`` JSONL file with the last error, to be replayed
    later (:meth:`replay`). A 4xx is not retried (the request itself is wrong). A circuit breaker
    keeps a dead receiver from costing every alert its full backoff: after ``open_after``
    notifications in a row went to the dead letters, the next ones go there at once (one attempt,
    no backoff) until a delivery succeeds."""

    def __init__(self, url: str, dead_letter: str | Path, min_severity: Severity = "info", retries: int = 3,
                 backoff_s: float = 0.05, timeout_s: float = 2.0, open_after: int = 2,
                 sleep: Callable[[float], None] = time.sleep):
        self.url = url
        self.dead_letter = Path(dead_letter)
        self.min_severity = min_severity
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.timeout_s = float(timeout_s)
        self.sleep = sleep
        self.open_after = int(open_after)
        self.failures_in_a_row = 0
        self.delivered = 0
        self.attempts = 0
        self.dead = 0

    def post(self, note: dict) -> int:
        req = urllib.request.Request(self.url, data=json.dumps(note).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Idempotency-Key": delivery_key(note)})
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - a loopback URL we built
            return resp.status

    def send(self, alert: Alert | dict) -> bool:
        note = alert.notification() if isinstance(alert, Alert) else alert
        error = ""
        tries = 1 if self.circuit_open else self.retries + 1  # open: one probe, no backoff
        for attempt in range(tries):
            self.attempts += 1
            try:
                self.post(note)
                self.delivered += 1
                self.failures_in_a_row = 0
                return True
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
                if exc.code < 500:
                    break
            except (urllib.error.URLError, OSError) as exc:
                error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt < tries - 1:
                self.sleep(self.backoff_s * 2 ** attempt)
        self.dead += 1
        self.failures_in_a_row += 1
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        with open(self.dead_letter, "a", encoding="utf-8") as f:
            f.write(json.dumps({"notification": note, "error": error, "attempts": attempt + 1}, sort_keys=True) + "\n")
            f.flush()
        return False

    @property
    def circuit_open(self) -> bool:
        return self.open_after > 0 and self.failures_in_a_row >= self.open_after

    def replay(self) -> tuple[int, int]:
        """Send the dead letters again (the receiver is back); those that fail again stay. Returns
        (delivered, still dead)."""
        letters = read_jsonl(self.dead_letter)
        self.dead_letter.unlink(missing_ok=True)
        ok = sum(self.send(d["notification"]) for d in letters)
        return ok, len(letters) - ok


class Receiver:
    """What :func:`webhook_receiver` recorded: every request (``requests``) and the notifications
    kept once per idempotency key (``received``)."""

    def __init__(self, fail_first: int = 0):
        self.fail_first = fail_first
        self.requests: list[dict] = []
        self.received: list[dict] = []
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/alerts"

    @property
    def running(self) -> bool:
        return self.server is not None

    def stop(self) -> None:
        """Stop listening (a later POST gets 'connection refused')."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = None

    def _record(self, body: bytes, key: str) -> int:
        with self._lock:
            self.requests.append({"key": key, "bytes": len(body)})
            if len(self.requests) <= self.fail_first:
                return 503
            note = json.loads(body)
            if key not in self._keys:
                self._keys.add(key)
                self.received.append(note)
            return 200


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                code = receiver._record(body, self.headers.get("Idempotency-Key") or hashlib.sha1(body).hexdigest())
            except ValueError:
                code = 400
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):  # no request lines on stderr
            pass

    return Handler


@contextlib.contextmanager
def webhook_receiver(fail_first: int = 0) -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1 (port 0: the OS picks a free one) in a thread, recording the
    JSON it is POSTed. ``fail_first``: answer the first n requests with 503 (to show retries)."""
    receiver = Receiver(fail_first)
    receiver.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.server.daemon_threads = True
    receiver.thread = threading.Thread(target=receiver.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.stop()


# --- the incident report: chapter 3's agent, with a deterministic fallback ------------------------

def incident_title(alert: Alert | dict) -> str:
    """The rule's own description as a title ("Worker without a vest in the forklift zone"): plain
    words, no punctuation for a small model to trip on."""
    a = alert if isinstance(alert, dict) else alert.notification()
    text = a["description"] or phrase(a["rule"])
    text = text[2:] if text.startswith("a ") else text
    return text[:1].upper() + text[1:]


def _who(a: dict) -> str:
    return "worker" if a["label"] == ObjectClass.PERSON else phrase(a["label"])


def incident_body(alert: Alert | dict) -> str:
    """The deterministic report: every structured field of the alert, nothing from its evidence text."""
    a = alert if isinstance(alert, dict) else alert.notification()
    lines = [f"Alert {a['id']} ({a['severity']}): {a['description']}.",
             f"Who: {_who(a)} track {a['track_id']}. Where: {phrase(a['zone']) if a.get('zone') else 'outside any zone'}.",
             f"When: {a['first_time_s']:.1f} s to {a['last_time_s']:.1f} s of {a['source'] or 'the stream'} "
             f"(frames {a['first_frame']} to {a['last_frame']}), {a['count']} matching event(s).",
             "Action: a supervisor checks the camera and the worker; the report was written from the alert's fields."]
    facts = {k: v for k, v in a.get("details", {}).items() if k in ("forklift_id", "min_distance_m", ObjectClass.HARD_HAT)}
    if facts:
        said = {True: "yes", False: "no"}
        lines.insert(2, "Facts: " + ", ".join(f"{phrase(k)}: {said.get(v, v) if isinstance(v, bool) else v}"
                                               for k, v in sorted(facts.items())) + ".")
    return "\n".join(lines)


def incident_task(alert: Alert | dict) -> str:
    """The agent's task, from structured fields only (the rule's description, integers, seconds, the
    clip's name: no event text, which is untrusted). It names the report's title and body, so the
    small local model only has to copy them: asked to compose them, it left the tool's arguments
    empty while this was written (see the notebook)."""
    a = alert if isinstance(alert, dict) else alert.notification()
    what = a["description"]
    what = f"was {what[len('a worker '):]}" if what.startswith("a worker ") else f"raised: {what}"
    # A clip's name is outside text too (a reader's file): only word characters reach the model.
    clip = re.sub(r"[^\w.-]", "_", a["source"] or "stream")[:60]
    body = f"{_who(a)} track {a['track_id']} {what} from {a['first_time_s']:.1f} s in clip {clip} (alert {a['id']})"
    return f'Send an incident report titled "{incident_title(a)}" with severity {a["severity"]}. Report body: {body}.'


def judge_report(text: str, alert: Alert | dict) -> list[str]:
    """What a filed report misses (empty: good enough): the track, the times, the clip, the severity."""
    a = alert if isinstance(alert, dict) else alert.notification()
    low = text.lower()
    problems = []
    if str(a["track_id"]) not in text:
        problems.append("no track id")
    if f"{a['first_time_s']:.1f}" not in text:
        problems.append("no start time")
    if a.get("source") and a["source"] not in text:
        problems.append("no clip name")
    if f"severity: {a['severity']}" not in low:
        problems.append(f"severity is not {a['severity']}")
    return problems


@dataclass
class Incident:
    alert_id: str
    used: Literal["agent", "fallback"]
    file: str  # the report in the workspace's outbox
    why: str = ""  # why the fallback was used ('' when the agent's report was kept)
    agent_status: str | None = None
    agent_seconds: float | None = None
    agent_file: str | None = None  # the agent's own report, kept even when judged poor
    problems: list[str] = field(default_factory=list)
    task: str = ""  # what the agent was asked (structured fields only)


class IncidentSink:
    """For each firing alert at ``min_severity`` (critical): chapter 3's agent files an incident
    report in ``workspace/outbox`` (``approve="auto"``, a recursion limit), the report is checked
    (:func:`judge_report`), and when the agent filed none, a poor one, or its budget
    (``agent_calls``) is spent, the same ``send_incident_report`` tool files the deterministic report
    (:func:`incident_body`). Every incident has a report; ``incidents`` says which one was used."""

    def __init__(self, workspace: str | Path, min_severity: Severity = "critical", agent_calls: int = 1,
                 recursion_limit: int = 12, max_steps: int = 2, run_agent=None, llm=None):
        from ..agent.tools import warehouse_tools

        self.tools = warehouse_tools(workspace)
        self.workspace = self.tools.workspace
        self.min_severity = min_severity
        self.agent_calls = int(agent_calls)
        self.recursion_limit = recursion_limit
        self.max_steps = max_steps
        self._run_agent = run_agent
        self.llm = llm
        self.incidents: list[Incident] = []
        self.results: list = []  # the agent's AgentResults

    def _outbox(self) -> set[str]:
        return {p.name for p in self.workspace.outbox.glob("*.md")} if self.workspace.outbox.is_dir() else set()

    def send(self, alert: Alert) -> Incident | None:
        if alert.status != "firing":
            return None
        agent_file, why, problems, status, seconds, task = None, "", [], None, None, ""
        if self.agent_calls > 0:
            self.agent_calls -= 1
            run = self._run_agent
            if run is None:
                from ..agent.graph import run_agent as run
            before = self._outbox()
            task = incident_task(alert)
            result = run(task, approve="auto", tools=self.tools, recursion_limit=self.recursion_limit,
                         max_steps=self.max_steps, **({"llm": self.llm} if self.llm is not None else {}))
            self.results.append(result)
            status, seconds = result.status, result.seconds
            new = sorted(self._outbox() - before)
            if new:
                agent_file = f"outbox/{new[-1]}"
                problems = judge_report((self.workspace.path / agent_file).read_text(encoding="utf-8"), alert)
                if not problems:
                    inc = Incident(alert.id, "agent", agent_file, "", status, seconds, agent_file, task=task)
                    self.incidents.append(inc)
                    return inc
                why = "the agent's report is poor: " + "; ".join(problems)
            else:
                errors = [c.get("result", "") for c in getattr(result, "tool_calls", None) or [] if c.get("is_error")]
                why = f"the agent filed no report (status {status}" + (f"; {errors[-1][:120]})" if errors else ")")
        else:
            why = "the agent's budget is spent"
        res = self.tools.call("send_incident_report", arguments={
            "title": incident_title(alert)[:120], "body": incident_body(alert), "severity": alert.severity})
        if res.is_error:
            raise RuntimeError(f"the fallback incident report failed: {res.value}")
        inc = Incident(alert.id, "fallback", res.value["file"], why, status, seconds, agent_file, problems, task)
        self.incidents.append(inc)
        return inc


__all__ = ["Alert", "AlertEngine", "AlertRule", "DEFAULT_RULES", "Incident", "IncidentSink", "JsonlSink", "Receiver",
           "SEVERITIES", "TrackState", "WebhookSink", "alert_stream", "delivery_key", "incident_body", "incident_task",
           "incident_title", "judge_report", "read_jsonl", "severity_rank", "webhook_receiver"]
