"""6. Idle: the daemon's CPU time and context switches (wake-ups), summed over its threads
from /proc/PID/task, over a window with nothing happening; and its peak RSS (VmHWM).

The loop's own thread is counted apart: the watcher threads also wake for what happens in
/run/netns, where every namespace created on the machine (by anyone) makes an event that the
file watcher must look at before ignoring it.
"""

from __future__ import annotations

import time
from typing import Any

from bench.scenario import Scenario


def measure_idle(s: Scenario, window: float) -> dict[str, Any]:
    s.daemon.wait_quiet(max(s.config.settle_s, 1.2))
    before = s.daemon.usage()
    time.sleep(window)
    after = s.daemon.usage()
    woke = {tid: after.per_thread[tid] - count for tid, count in before.per_thread.items()
            if tid in after.per_thread and after.per_thread[tid] != count}
    loop = str(s.daemon.pid)
    loop_wakeups = after.per_thread.get(loop, 0) - before.per_thread.get(loop, 0)
    return {"window_s": window, "cpu_s": after.cpu_s - before.cpu_s,
            "wakeups": after.switches - before.switches,
            "wakeups_per_s": (after.switches - before.switches) / window,
            "loop_wakeups": loop_wakeups, "loop_wakeups_per_s": loop_wakeups / window,
            "threads": len(after.per_thread), "wakeups_by_thread": woke,
            "peak_rss_mb": s.daemon.peak_rss_mb()}
