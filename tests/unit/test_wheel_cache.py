"""The cache of pinned wheels and what is built from them (stagekit/wheels.py): two processes that need one
entry at once (two jobs, two test workers) build it once, the second waiting for the first."""

from __future__ import annotations

import threading
import time

from stagekit.wheels import built_from_wheel


def test_an_entry_needed_twice_at_once_is_built_once(tmp_path):
    wheel = tmp_path / "w-1.0-wheel" / "w-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"")  # found in the cache: nothing is fetched
    builds, building = [], threading.Event()

    def build(source, target):
        builds.append(source)
        building.set()
        time.sleep(0.3)  # the second caller arrives while this build runs
        staging = target.with_name(f".{target.name}.tmp")
        staging.mkdir()
        (staging / "done").write_text("built")
        staging.rename(target)

    results = []

    def need():
        results.append(built_from_wheel("w", "1.0", "1 kB", tmp_path, "entry", "done", build))

    first = threading.Thread(target=need)
    first.start()
    building.wait(timeout=30)
    second = threading.Thread(target=need)  # a lock file is held per open file: a thread waits as a process would
    second.start()
    first.join(timeout=60)
    second.join(timeout=60)
    assert builds == [wheel] and results == [tmp_path / "entry"] * 2
    assert (tmp_path / "entry" / "done").read_text() == "built"
