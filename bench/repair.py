"""4. Repair: an interface deleted out of band -- RTM_DELLINK sent in-process on the
benchmark's own netlink socket, so no fork is timed -- many times: p50 and p99 until the
interface is back as specified (a new ifindex with the right settings), from the kernel's
acknowledgement of the delete (the deletion done, as `ip link del` returning would say) and
from sending it.

The kernel announces the link gone early in the delete, then holds the rtnl lock through RCU
grace periods before it acknowledges (about 20 ms on a loaded 2-core machine): a re-create
sent meanwhile waits for that lock. So from sending, no repair can be faster than the delete
itself; from the acknowledgement is what the daemon adds.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.items import Item, as_specified, replaced
from bench.sandbox import percentile
from bench.scenario import Scenario
from macvland.rtnl import RTM_DELLINK, ifinfo


def measure_repairs(s: Scenario) -> dict[str, Any]:
    # The daemon stops fighting for an interface undone more than 3 times a minute, so
    # each interface is deleted at most twice: fewer repetitions at small N.
    reps = min(s.config.repairs, 2 * s.n, 20 if s.n < 1000 else s.n)
    from_send, deletes = [], []
    for rep in range(reps):
        item = s.items[(rep * 7919) % s.n] if reps <= s.n else s.items[rep % s.n]
        latency, delete = measure_repair(s, item)
        from_send.append(latency)
        deletes.append(delete)
    from_ack = [max(0.0, total - delete) for total, delete in zip(from_send, deletes, strict=True)]
    return {"method": "RTM_DELLINK in-process on the benchmark's own netlink socket; "
                      "from its acknowledgement (p50_ms, p99_ms) and from sending it "
                      "(from_send_*) until the event of the re-created link",
            "reps": reps, "p50_ms": percentile(from_ack, 50), "p99_ms": percentile(from_ack, 99),
            "max_ms": max(from_ack), "from_send_p50_ms": percentile(from_send, 50),
            "from_send_p99_ms": percentile(from_send, 99),
            "delete_ack_ms_median": statistics.median(deletes), "samples_ms": from_ack,
            "from_send_samples_ms": from_send}


def measure_repair(s: Scenario, item: Item) -> tuple[float, float]:
    s.daemon.wait_quiet()
    s.view.reset()
    old = s.view.links[item.key]
    offset = s.daemon.offset()
    sock = s.lab.namespaces.socket(item.netns)
    start = time.monotonic()
    sock.request(RTM_DELLINK, ifinfo(old.ifindex))
    acked = time.monotonic()
    check = replaced(as_specified(item, s.parents[item.parent]), old.ifindex)
    done = s.kernel_wait({item.key: check}, f"repair of {item.name}", 10)
    s.settle(offset)
    return 1000 * (done - start), 1000 * (acked - start)
