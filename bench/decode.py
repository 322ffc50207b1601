"""How long decoding a link dump takes: µs per RTM_NEWLINK of a macvlan.

Not a test (timings on a loaded machine prove nothing); a yardstick for changes to the
decoder, which is the hot path of observe (one dump per namespace, thousands of links).

    python -m bench.decode [-n 1000] [--save FILE | --load FILE]

It makes a throwaway namespace with a veth parent and N macvlans on it (modes in turn, a
source one with two MACs now and then), dumps it once with macvland's own socket, deletes
the namespace, and times `decode_link` (and the Link each RawLink becomes) over the captured
messages. `--save` keeps the messages, `--load` times saved ones (to compare two trees on the
same bytes) without touching the kernel.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import time
import uuid
from collections.abc import Callable

from macvland.netns import Namespaces
from macvland.nla import u32 as _u32
from macvland.observe import _link
from macvland.rtnl import IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS, RTM_GETLINK, decode_link, ifinfo

MODES = ("bridge", "vepa", "private", "source")


def capture(n: int) -> list[bytes]:
    """The RTM_NEWLINK bodies of N macvlans, from one dump in a namespace of their own."""
    name = f"mvdec{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        def ip(*args: str, **kw: object) -> None:
            subprocess.run(["ip", "-n", name, *args], check=True, **kw)  # type: ignore[call-overload]
        ip("link", "add", "eth1", "type", "veth", "peer", "name", "eth1-peer")
        ip("link", "set", "eth1", "up")
        lines = []
        for i in range(n):
            mode = MODES[i % len(MODES)]
            line = f"link add mv{i} link eth1 type macvlan mode {mode}"
            if i % 3 == 0:
                line += " bcqueuelen 300"
            lines.append(line)
            if mode == "source":
                lines.append(f"link set mv{i} type macvlan macaddr set "
                             f"02:00:00:00:{i >> 8 & 255:02x}:{i & 255:02x} 02:00:00:01:00:01")
            lines.append(f"link set mv{i} up")
        ip("-batch", "-", input="\n".join(lines) + "\n", text=True)
        with Namespaces(home=f"/run/netns/{name}") as namespaces:
            bodies = namespaces.socket(None).dump(
                RTM_GETLINK, ifinfo() + _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))
        return [bytes(b) for b in bodies if decode_link(b).kind == "macvlan"]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def best(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--save")
    parser.add_argument("--load")
    args = parser.parse_args()
    if args.load:
        with open(args.load, "rb") as file:
            raw: list[bytes] = pickle.load(file)
    else:
        if os.geteuid() != 0:
            raise SystemExit("needs root to make a namespace")
        raw = capture(args.n)
        if args.save:
            with open(args.save, "wb") as file:
                pickle.dump(raw, file)
    bodies = [memoryview(b) for b in raw]
    size = sum(len(b) for b in raw) / len(raw)
    decode = best(lambda: [decode_link(b) for b in bodies], args.repeat)
    links = [decode_link(b) for b in bodies]
    build = best(lambda: [_link(link, None, "eth1", "eth1", link.name) for link in links],
                 args.repeat)
    per = 1e6 / len(bodies)
    print(f"{len(bodies)} macvlan messages of {size:.0f} bytes on average: "
          f"decode {decode * per:.2f} µs/link, RawLink to Link {build * per:.2f} µs/link "
          f"(best of {args.repeat})")


if __name__ == "__main__":
    main()
