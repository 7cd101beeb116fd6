"""Event time: which instant an event happened at, as integer epoch milliseconds.

Kairos runs on event time so that a replay of a file gives the same windows and the same
decisions as the live run that saw the same events.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

MS_PER_SECOND = 1000
MINUTE_MS = 60 * MS_PER_SECOND
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
#: Event times further ahead of their receive time than this are taken as the receive time.
MAX_CLOCK_AHEAD_MS = DAY_MS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The same instant without a zone: `iso` formats naive UTC and writes the `Z` itself, twice as
#: fast as formatting an aware time and replacing its `+00:00` (every trigger writes several).
_NAIVE_EPOCH = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Integer arithmetic: float seconds * 1000 is off by a millisecond for some instants.
    return (moment - _EPOCH) // _ONE_MS


def parse_iso_ms(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 date-time (`Z` or an offset; naive means UTC)."""
    return to_ms(datetime.fromisoformat(text))


def iso(ms: int) -> str:
    """ISO 8601 in UTC with millisecond precision and a `Z`, as Segment writes timestamps."""
    return (_NAIVE_EPOCH + ms * _ONE_MS).isoformat(timespec="milliseconds") + "Z"


def event_time_ms(
    timestamp: int | None, sent_at: int | None, original: int | None, received_at: int
) -> int:
    """When the event happened, corrected for the sender's clock as Segment does.

    With `originalTimestamp` and `sentAt` from the same (possibly wrong) device clock, the event
    happened `sentAt - originalTimestamp` before the server received it. Otherwise the explicit
    `timestamp` is trusted, and failing that the receive time. A time more than a day after the
    receive time is a broken clock, not the future: the receive time is used instead, so that one
    such event cannot make a profile's windows forget the present.
    """
    if original is not None and sent_at is not None:
        at = received_at - (sent_at - original)
    elif timestamp is not None:
        at = timestamp
    elif original is not None:
        at = original
    else:
        at = received_at
    return received_at if at > received_at + MAX_CLOCK_AHEAD_MS else at


def parse_duration_ms(text: str) -> int:
    """Milliseconds of a duration written `30s`, `15m`, `24h`, `7d` or `2w`."""
    units = {"s": MS_PER_SECOND, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}
    text = text.strip()
    digits = text[:-1]
    if len(text) < 2 or text[-1] not in units or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"duration {text!r} is not like 30s, 15m, 24h, 7d or 2w")
    return int(digits) * units[text[-1]]
