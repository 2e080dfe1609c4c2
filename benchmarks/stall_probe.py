"""pytest plugin: what napari's GUI thread runs during each stall of its event loop.

A 10 ms QTimer on the Qt event loop beats; a watchdog thread wakes every 5 ms and, while the beat
is older than 40 ms, records the stack of the main thread (``sys._current_frames()``). Every gap
of the beat longer than ``STALL_MS`` (default 100) is written with its stack samples to
``STALL_OUT`` (default ``stalls.txt``, appended per test), together with marks: the start and end
of the Predict/Train widget methods and of ``set_layer``, where every full (generation 2) garbage
collection starts (the stack of the allocation or the ``gc.collect()`` call) and how long each
collection over 20 ms took (``gc.callbacks``). ``NOSAMPLE=1`` records only the gaps, the marks
and the collections (no watchdog, which itself costs some GIL time).

Run (from the repository root)::

    PYTHONPATH=$PWD/src:$PWD/benchmarks xvfb-run -a -s "-screen 0 1600x1000x24" \\
        python -m pytest -p stall_probe tests/gui/test_responsiveness.py -s

A stall with 0 samples is one in which the watchdog got no turn: the GIL was held in C code (a
garbage collection shows up as such), or the process got no CPU.
"""

import gc
import os
import sys
import threading
import time
import traceback

import pytest

THRESH = float(os.environ.get("STALL_MS", "100")) / 1000
STATE = {"beat": None, "stalls": [], "cur": None, "t0": None, "marks": []}


def mark(text):
    STATE["marks"].append((time.perf_counter(), text))


def _fmt(frame, depth=40):
    out = []
    for fs in traceback.extract_stack(frame)[-depth:]:
        fn = fs.filename
        for key in ("site-packages/", "src/", "lib/python3."):
            if key in fn:
                fn = fn.split(key)[-1]
        out.append(f"{fn}:{fs.lineno} {fs.name}")
    return tuple(out)


def _watch(main_id, stop):
    while not stop.is_set():
        time.sleep(0.005)
        beat = STATE["beat"]
        if beat is None or time.perf_counter() - beat <= 0.04:
            continue
        frame = sys._current_frames().get(main_id)
        if STATE["cur"] is None or STATE["cur"]["beat"] != beat:
            STATE["cur"] = {"beat": beat, "samples": []}
        STATE["cur"]["samples"].append((time.perf_counter(), _fmt(frame) if frame else ()))


_GC = {}


def _gc_callback(phase, info):
    if phase == "start":
        _GC["t"] = time.perf_counter()
        if info["generation"] == 2:  # where it starts: an allocation, or someone's gc.collect()
            stack = traceback.extract_stack()[-9:-1]
            mark(
                "full gc starts at "
                + " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(stack))
            )
    elif "t" in _GC and time.perf_counter() - _GC["t"] > 0.02:
        mark(
            f"gc generation {info['generation']}: {(time.perf_counter() - _GC['t']) * 1000:.0f} ms, "
            f"{info['collected']} collected ({threading.current_thread().name})"
        )


def _patch_marks():
    try:
        from napari_hrtem.plugin.widgets import _common, predict, train
    except ImportError:
        return

    def wrap(owner, name):
        original = getattr(owner, name)
        if getattr(original, "_probe", False):
            return
        label = f"{getattr(owner, '__name__', owner)}.{name}"

        def wrapper(*args, **kwargs):
            mark(f"{label} begin")
            try:
                return original(*args, **kwargs)
            finally:
                mark(f"{label} end")

        wrapper._probe = True
        setattr(owner, name, wrapper)

    for cls, names in (
        (predict.PredictWidget, ("start", "_done", "_finished")),
        (train.TrainWidget, ("start", "_done", "_ended")),
    ):
        for name in names:
            wrap(cls, name)
    wrap(_common, "set_layer")


@pytest.fixture(autouse=True)
def stall_probe(qapp, request):
    from qtpy.QtCore import QTimer

    STATE["t0"] = time.perf_counter()
    _patch_marks()
    if _gc_callback not in gc.callbacks:
        gc.callbacks.append(_gc_callback)
    timer = QTimer()
    timer.setInterval(10)

    def tick():
        now = time.perf_counter()
        beat, cur = STATE["beat"], STATE["cur"]
        if beat is not None and now - beat > THRESH:
            samples = cur["samples"] if cur is not None and cur["beat"] == beat else []
            STATE["stalls"].append({"start": beat - STATE["t0"], "dur": now - beat, "samples": samples})
        STATE["beat"] = now

    timer.timeout.connect(tick)
    STATE["beat"] = None
    timer.start()
    stop = threading.Event()
    if not os.environ.get("NOSAMPLE"):
        threading.Thread(target=_watch, args=(threading.main_thread().ident, stop), daemon=True).start()
    mark(f"{len(gc.get_objects())} objects tracked by the garbage collector")
    yield
    mark(f"{len(gc.get_objects())} objects tracked by the garbage collector")
    stop.set()
    timer.stop()
    _report(request.node.nodeid)


def _report(test):
    t0 = STATE["t0"]
    with open(os.environ.get("STALL_OUT", "stalls.txt"), "a") as out:
        out.write(f"\n==== {test}: marks (s from the test's start) ====\n")
        out.writelines(f"  {t - t0:8.3f} s  {text}\n" for t, text in STATE["marks"])
        out.write(f"==== stalls > {THRESH * 1000:.0f} ms: {len(STATE['stalls'])} ====\n")
        for stall in STATE["stalls"]:
            out.write(
                f"\n--- stall at {stall['start']:.3f} s: {stall['dur'] * 1000:.0f} ms, "
                f"{len(stall['samples'])} samples\n"
            )
            groups = []  # consecutive samples with the same stack
            for now, stack in stall["samples"]:
                if groups and groups[-1][1] == stack:
                    groups[-1][2] += 1
                else:
                    groups.append([now - t0, stack, 1])
            for t, stack, n in groups:
                out.write(f"  [{t:8.3f} s, {n} sample(s)]\n")
                out.writelines(f"      {line}\n" for line in stack)
    STATE["stalls"].clear()
    STATE["marks"].clear()
