"""The link watcher's tables against the real kernel: events keep them equal to a dump."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from macvland.observe import observe
from macvland.watch import _REREAD_DOWN, Interest, LinkWatcher, Trigger
from tests.conftest import Lab


@pytest.fixture
def watcher(lab: Lab) -> Iterator[tuple[LinkWatcher, list[Trigger]]]:
    rings: list[Trigger] = []
    links = LinkWatcher(lab.namespaces, rings.append)
    links.watch({None: Interest(frozenset({"mv0", "eth1"}))})
    links.start()
    yield links, rings
    links.stop()


def table_matches_a_dump(lab: Lab, links: LinkWatcher) -> bool:
    links.refresh()
    cached = links.cached(None)
    assert cached is not None
    dumped = lab.namespaces.socket(None).links()
    return sorted(cached, key=lambda k: k.ifindex) == sorted(dumped, key=lambda k: k.ifindex)


def test_events_keep_the_table_equal_to_a_dump(
        lab: Lab, watcher: tuple[LinkWatcher, list[Trigger]]) -> None:
    links, _ = watcher
    assert links.cached(None) is None  # nothing to trust before a dump seeds it
    observe(lab.namespaces, [], links)  # seeds
    for change in (("link", "add", "mv0", "link", "eth1", "up", "type", "macvlan"),
                   ("link", "set", "mv0", "mtu", "1400"),
                   ("link", "set", "mv0", "type", "macvlan", "mode", "private"),
                   ("link", "set", "mv0", "name", "renamed"),
                   ("link", "add", "other", "link", "eth2", "up", "type", "macvlan"),
                   ("link", "set", "other", "alias", "x"),
                   ("link", "del", "renamed")):
        lab.ip(*change)
        # The kernel queued the events before `ip` got its ack: one refresh sees them all.
        assert table_matches_a_dump(lab, links), change


def test_a_burst_of_events_read_at_once_leaves_the_table_equal_to_a_dump(
        lab: Lab, watcher: tuple[LinkWatcher, list[Trigger]]) -> None:
    # Only each link's last event is decoded: the burst's intermediate states must not matter.
    links, _ = watcher
    observe(lab.namespaces, [], links)
    lab.ip("link", "add", "mv0", "link", "eth1", "up", "type", "macvlan")
    lab.ip("link", "add", "gone", "link", "eth1", "up", "type", "macvlan")
    links.refresh()
    for change in (("link", "set", "mv0", "mtu", "1400"),
                   ("link", "set", "mv0", "mtu", "1300"),
                   ("link", "set", "mv0", "name", "renamed"),
                   ("link", "del", "gone"),
                   ("link", "add", "gone", "link", "eth2", "up", "type", "macvlan"),
                   ("link", "add", "brief", "link", "eth1", "type", "macvlan"),
                   ("link", "del", "brief")):
        lab.ip(*change)

    assert table_matches_a_dump(lab, links)


def test_a_down_macvlan_is_read_again_so_its_silent_changes_are_seen(
        lab: Lab, watcher: tuple[LinkWatcher, list[Trigger]]) -> None:
    # The kernel does not announce a mode change on a down macvlan: the table cannot know
    # it from events, so the table reads that link again before it is served.
    links, _ = watcher
    lab.ip("link", "add", "mv0", "link", "eth1", "up", "type", "macvlan")
    observe(lab.namespaces, [], links)
    lab.ip("link", "set", "mv0", "down")
    links.refresh()
    lab.ip("link", "set", "mv0", "type", "macvlan", "mode", "private")
    assert links.refresh() is False  # no event came
    assert table_matches_a_dump(lab, links)
    served = {link.name: link for link in links.cached(None) or []}
    assert served["mv0"].value("mode") == "private"
    lab.ip("link", "del", "mv0")
    assert table_matches_a_dump(lab, links)


def test_many_down_macvlans_send_the_namespace_back_to_dumps(
        lab: Lab, watcher: tuple[LinkWatcher, list[Trigger]]) -> None:
    links, _ = watcher
    names = [f"mv{i}" for i in range(_REREAD_DOWN + 1)]
    for name in names:
        lab.ip("link", "add", name, "link", "eth1", "type", "macvlan")  # down
    observe(lab.namespaces, [], links)
    links.refresh()
    assert links.cached(None) is None
    lab.ip("link", "set", names[0], "up")
    links.refresh()
    assert links.cached(None) is not None  # few enough now to be read one by one


def test_only_events_about_links_of_interest_are_relevant(
        lab: Lab, watcher: tuple[LinkWatcher, list[Trigger]]) -> None:
    links, _ = watcher
    links.refresh()
    lab.ip("link", "add", "other", "link", "eth2", "type", "macvlan")
    assert links.refresh() is False
    lab.ip("link", "add", "mv0", "link", "eth1", "type", "macvlan")
    assert links.refresh() is True
    assert links.refresh() is False  # already read


def test_events_that_change_nothing_the_planner_reads_are_not_relevant(
        lab: Lab, watcher: tuple[LinkWatcher, list[Trigger]]) -> None:
    links, _ = watcher
    lab.ip("link", "add", "mv0", "link", "eth1", "up", "type", "macvlan")
    observe(lab.namespaces, [], links)  # seeded: events now compare against the table
    lab.ip("link", "set", "mv0", "txqueuelen", "500")  # an event, but no field of ours
    assert links.refresh() is False
    lab.ip("link", "set", "mv0", "mtu", "1400")
    assert links.refresh() is True


def test_a_replaced_namespace_is_not_served_from_its_old_table(lab: Lab) -> None:
    a = lab.add_netns("a")
    links = LinkWatcher(lab.namespaces, lambda trigger: None)
    try:
        links.start()
        links.watch({a: Interest()})
        observe(lab.namespaces, [a], links)
        assert links.cached(a) is not None
        lab.del_netns(a)
        lab.add_netns("a")
        assert links.cached(a) is None
    finally:
        links.stop()


def test_watch_says_when_a_subscription_is_new(lab: Lab) -> None:
    """The daemon looks once more after a new subscription: a change made before it was
    announced to nobody."""
    links = LinkWatcher(lab.namespaces, lambda trigger: None)
    links.start()
    try:
        assert links.watch({None: Interest(frozenset({"eth1"}))})
        assert not links.watch({None: Interest(frozenset({"eth1", "mv0"}))})
        assert not links.watch({})
        assert links.watch({None: Interest()})
    finally:
        links.stop()


# The daemon's first pass dumps a namespace before the loop says which of its links matter
# (`watch`, after the pass): a change made in between must still be an event, or it waits
# unseen for the resync. So the first dump is taken with the subscription already there.


def test_a_change_between_the_first_dump_and_watch_is_an_event(lab: Lab) -> None:
    lab.ip("link", "add", "mv0", "link", "eth1", "up", "type", "macvlan")
    links = LinkWatcher(lab.namespaces, lambda trigger: None)
    try:
        links.start()
        observe(lab.namespaces, [], links)  # the first pass: nothing subscribed before it
        lab.ip("link", "set", "mv0", "mtu", "1400")
        links.watch({None: Interest(frozenset({"mv0"}))})  # what the loop does after it
        assert links.refresh() is True
        assert table_matches_a_dump(lab, links)
    finally:
        links.stop()


def test_a_change_just_after_a_replaced_namespace_is_dumped_is_an_event(lab: Lab) -> None:
    a = lab.add_netns("a")
    links = LinkWatcher(lab.namespaces, lambda trigger: None)
    try:
        links.start()
        links.watch({a: Interest(frozenset({"mv0"}))})
        observe(lab.namespaces, [a], links)
        lab.del_netns(a)
        lab.add_netns("a")
        lab.ip("link", "add", "mv0", "type", "veth", "peer", "name", "peer0", netns=a)
        observe(lab.namespaces, [a], links)  # dumps the new namespace
        lab.ip("link", "set", "mv0", "mtu", "1400", netns=a)
        links.watch({a: Interest(frozenset({"mv0"}))})
        assert links.refresh() is True
    finally:
        links.stop()


def test_an_event_that_changes_nothing_keeps_the_tables_object(
        lab: Lab, watcher: tuple[LinkWatcher, list[Trigger]]) -> None:
    # The plan memo reuses a plan while observe() hands back the same Link objects, and
    # observe() reuses a Link while the table holds the same RawLink object.
    links, _ = watcher
    lab.ip("link", "add", "mv0", "link", "eth1", "up", "type", "macvlan")
    observe(lab.namespaces, [], links)

    def served() -> object:
        links.refresh()
        return next(link for link in links.cached(None) or [] if link.name == "mv0")

    seeded = served()
    lab.ip("link", "set", "mv0", "txqueuelen", "500")
    assert served() is seeded
    lab.ip("link", "set", "mv0", "mtu", "1400")
    changed = served()
    assert changed is not seeded and changed != seeded
    assert table_matches_a_dump(lab, links)
