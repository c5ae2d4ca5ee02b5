"""A minimal keyed-state harness (a streaming runner's part) that drives the join's production stages.

``drive_join`` runs ``transforms.correlate.STAGES`` (route -> resolve -> join -> assemble; the
composite's own wiring) the way a streaming runner does: input in event-time bundles, state per key
(read from each DoFn's own state and timer parameters), the watermark following the input (minus
the allowed lateness) and event-time timers firing as it passes them. The input, one hot service
account's requests with an alert in its pod every hour, is generated lazily and is not held.
Used by tests/test_correlate_bounded.py and scripts/bench_correlate.py.
"""
from __future__ import annotations

import inspect
import resource
import time
import tracemalloc

from transforms.correlate.messages import unpack  # the join's bags hold packed batches

HOT_SA = "system:serviceaccount:data:crawler"
MINUTE = 60_000
BASE_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z


class Bag:
    def __init__(self):
        self.items = []

    def add(self, value):
        self.items.append(value)

    def read(self):
        return list(self.items)

    def clear(self):
        self.items = []


class Cell:
    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None


class Timer:
    def __init__(self, timers: dict, name):
        self._timers, self._name = timers, name

    def set(self, ts):
        self._timers[self._name] = ts.micros // 1000


class Stage:
    """One stage of ``transforms.correlate.STAGES``: its DoFn, state per key (read from the DoFn's own
    state and timer parameters), timers per key, outputs collected per call."""

    def __init__(self, spec, fn):
        from apache_beam.transforms.core import _StateDoFnParam, _TimerDoFnParam
        from apache_beam.transforms.userstate import BagStateSpec

        self.spec, self.fn = spec, fn
        self.states: dict = {}
        self.timer_param = self.on_timer = self.key_param = None
        for name, param in inspect.signature(fn.process).parameters.items():
            if isinstance(param.default, _StateDoFnParam):
                self.states[name] = Bag if isinstance(param.default.state_spec, BagStateSpec) else Cell
            elif isinstance(param.default, _TimerDoFnParam):
                self.timer_param = name
                callback = param.default.timer_spec._attached_callback
                self.on_timer = callback.__name__
                self.key_param = next((n for n, p in inspect.signature(callback).parameters.items()
                                       if p.default is type(fn).KeyParam), None)
        self.keyed = bool(self.states)
        self.keys: dict = {}
        self.timers: dict = {}  # key -> fire time (ms)

    def _state(self, key):
        st = self.keys.get(key)
        if st is None:
            st = self.keys[key] = {name: kind() for name, kind in self.states.items()}
        return st

    def process(self, element) -> list:
        if not self.keyed:
            return list(self.fn.process(element) or [])
        key = element[0]
        st = self._state(key)
        return list(self.fn.process(element, **st, **{self.timer_param: Timer(self.timers, key)}) or [])

    def fire(self, watermark_ms: int) -> list:
        out = []
        if not self.keyed:
            return out
        for key in [k for k, t in self.timers.items() if t <= watermark_ms]:
            del self.timers[key]
            st = self.keys[key]
            method = getattr(self.fn, self.on_timer)
            accepted = inspect.signature(method).parameters
            kwargs = {name: st[name] for name in self.states if name in accepted}
            if self.key_param:
                kwargs[self.key_param] = key
            out.extend(method(**kwargs) or [])
            if not any(isinstance(s, Bag) and s.items or isinstance(s, Cell) and s.value is not None
                       for s in st.values()):
                del self.keys[key]
        return out


def _unwrap(item):
    """(tag, value) of a DoFn output (TaggedOutput / WindowedValue / TimestampedValue / plain)."""
    import apache_beam as beam
    tag = None
    if isinstance(item, beam.pvalue.TaggedOutput):
        tag, item = item.tag, item.value
    return tag, getattr(item, "value", item)


def events(n: int, rate_per_hour: int, alert_every_ms: int):
    """Join inputs in event-time order: n requests of one hot SA, an alert in its pod regularly."""
    from transforms.correlate import Action, AlertSeen, PodFact

    step = 3_600_000 / rate_per_hour
    yield PodFact("data", "crawler-0", "pod_create", HOT_SA, BASE_MS - MINUTE)
    next_alert = BASE_MS + 15 * MINUTE
    alert_no = 0
    for i in range(n):
        t = BASE_MS + int(i * step)
        while t >= next_alert:
            yield AlertSeen("data", "crawler-0", next_alert, f"alert-{alert_no}", "Unexpected outbound connection")
            alert_no += 1
            next_alert += alert_every_ms
        yield Action(HOT_SA, t, f"audit-{i:08d}-ResponseComplete", "get", "pods", (), i % 10_000 == 0)


def drive_join(n: int, rate_per_hour: int, window_ms: int, lateness_ms: int, bundle: int, trace: bool) -> dict:
    """Drive ``transforms.correlate.STAGES`` (the composite's own wiring) like a streaming runner."""
    from transforms import correlate as c

    if trace:
        tracemalloc.start()
    settings = c.JoinSettings(window_ms, lateness_ms, window_ms, False, early=True)
    stages = [Stage(spec, spec.make(settings)) for spec in c.STAGES]
    consumer = {channel: stage for stage in stages for channel in stage.spec.inputs}
    join = next(s for s in stages if s.spec.label == "JoinWithinWindow")
    incidents = final_incidents = max_joined = peak_state = 0
    started = time.perf_counter()

    def deliver(stage, outputs):
        nonlocal incidents, final_incidents, max_joined
        channels = dict(stage.spec.outputs)
        for item in outputs:
            tag, value = _unwrap(item)
            channel = channels.get(tag)
            if channel == "versions":
                done, doc = value
                incidents += 1
                final_incidents += done
                max_joined = max(max_joined, doc["kubehunt"]["incident"]["action_count"])
            elif channel in consumer:
                target = consumer[channel]
                deliver(target, target.process(value))

    def run_bundle(elements):
        route = stages[0]
        route.fn.start_bundle()
        deliver(route, [o for e in elements for o in route.process(e)] + list(route.fn.finish_bundle()))

    def advance(watermark_ms):
        nonlocal peak_state
        held = sum(len(unpack(b)) for st in join.keys.values() for b in st["events"].items)  # packed batches
        peak_state = max(peak_state, held)
        for stage in stages:
            deliver(stage, stage.fire(watermark_ms))

    buf = []
    for element in events(n, rate_per_hour, 60 * MINUTE):
        buf.append(element)
        if len(buf) >= bundle:
            run_bundle(buf)
            last_t = max(e.t_ms for e in buf)
            buf = []
            advance(last_t - lateness_ms)
    if buf:
        run_bundle(buf)
    advance(2 ** 62)
    elapsed = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[1] if trace else None
    return {"events": n, "elapsed_s": round(elapsed, 2), "events_per_s": round(n / elapsed),
            "peak_traced_mib": round(traced / 2 ** 20, 1) if traced is not None else None,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "max_events_in_join_state": peak_state, "largest_incident_actions": max_joined,
            "incident_versions": incidents, "final_incidents": final_incidents,
            "events_per_window": int(rate_per_hour * window_ms / 3_600_000)}
