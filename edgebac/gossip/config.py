"""Gossip timing and size settings, as named presets with a reason for every default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from edgebac.errors import ConfigError
from edgebac.eventlog.encoding import MAX_EVENT_BYTES

EVENT_FRAMING = 5  # the msgpack bin32 header before each event of a page
# Room in a body for all but its events: the version vector (42 bytes an author, so ~20,000
# authors), the peers that ride along and the seal (nonce, MAC, sender, time: ~90 bytes).
MESSAGE_ROOM = 1 << 20


@dataclass(frozen=True)
class GossipConfig:
    pull_interval_s: float
    push_linger_s: float
    fanout: int
    max_fanout: int
    request_timeout_s: float
    max_page_bytes: int
    max_page_events: int
    max_pages_per_exchange: int
    max_body_bytes: int
    max_body_age_s: float
    suspicion_mult: float
    dead_mult: float
    dead_probe_chance: float
    peers_per_message: int
    view_limit: int

    def __post_init__(self) -> None:
        if self.max_page_events < 1:
            raise ConfigError(
                f"gossip max_page_events must be at least 1, not {self.max_page_events}"
            )
        if self.max_body_bytes < largest_page_body(self):
            raise ConfigError(
                f"gossip max_body_bytes {self.max_body_bytes} cannot carry a full page: a page of "
                f"max_page_bytes {self.max_page_bytes} (or one event of up to {MAX_EVENT_BYTES}) "
                f"needs {largest_page_body(self)}"
            )

    def with_(self, **changes: object) -> GossipConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


def largest_page_body(config: GossipConfig) -> int:
    """The largest body a page can make. A page stops before `max_page_bytes` of events, except
    that it always holds one event, whatever its size: so the largest legal event travels alone.
    """
    events = max(config.max_page_bytes, MAX_EVENT_BYTES)
    return events + EVENT_FRAMING * config.max_page_events + MESSAGE_ROOM


PRESETS: Mapping[str, GossipConfig] = MappingProxyType(
    {
        "default": GossipConfig(
            # One pull per second per node keeps idle traffic tiny (one small request a second)
            # while bounding how long a missed push can stay missed.
            pull_interval_s=1.0,
            # Bursts of appends (a job's bids, a batch of results) leave as one request.
            push_linger_s=0.005,
            # At least 3 new peers a hop (N nodes in ~log4(N) hops), log2(N) + 2 in small
            # networks so a one-shot relay misses almost no one (see membership.push_fanout)...
            fanout=3,
            # ...and never more than 8: beyond that duplicates grow faster than coverage.
            max_fanout=8,
            # Edge links are slow and lossy; a stuck peer must not hold a round for long.
            request_timeout_s=5.0,
            # 1 MiB pages stream a big backlog at full speed without large buffers on a Pi.
            max_page_bytes=1 << 20,
            max_page_events=2000,
            # A catch-up of millions of events is spread over several exchanges, not one.
            max_pages_per_exchange=64,
            # A page (see largest_page_body: ~2 MiB) with room to spare; anything larger is not
            # ours. Both sides hold this limit: the reader refuses a body past it (413).
            max_body_bytes=4 << 20,
            # Bodies older than this are replays (or a clock so wrong the node must be fixed).
            max_body_age_s=60.0,
            # Lifeguard-style: suspect after mult * log10(N) intervals without news...
            suspicion_mult=4.0,
            # ...and dead after this many times that; a dead peer is still probed now and then.
            dead_mult=3.0,
            # Dead peers and unanswered seeds get one pull in ten: partitions heal by themselves.
            dead_probe_chance=0.1,
            # Membership rides along each exchange; 32 entries is a few KiB.
            peers_per_message=32,
            # Every node of a real edge network fits; simulations of 10,000 nodes use less.
            view_limit=4096,
        ),
        "fast": GossipConfig(
            # Tests on one machine: converge in tenths of a second, still cheap on 2 cores.
            pull_interval_s=0.2,
            push_linger_s=0.0,
            fanout=3,
            max_fanout=8,
            request_timeout_s=1.0,
            max_page_bytes=1 << 20,
            max_page_events=2000,
            max_pages_per_exchange=64,
            max_body_bytes=4 << 20,
            max_body_age_s=30.0,
            suspicion_mult=4.0,
            dead_mult=3.0,
            dead_probe_chance=0.25,
            peers_per_message=32,
            view_limit=4096,
        ),
    }
)
