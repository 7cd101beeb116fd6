"""Identifiers: how user and anonymous ids are normalized, and which key a record belongs to.

Normalizing here, once, is what lets a CRM record for ` Ada@Example.com ` and a Segment identify for
`ada@example.com` land on one profile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Keys of visitors known only by an anonymousId carry this prefix, so they never collide with
#: a userId and a profile can say what it is.
ANONYMOUS_PREFIX = "anon:"
MAX_ID_LENGTH = 256

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
#: The characters of Unicode category Cc (controls): C0, DEL and C1, a set Unicode never changes.
#: One regular expression search instead of a category lookup per character of every id.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class InvalidIdentifier(ValueError):
    """An identifier that cannot name a user (empty, too long, or with control characters)."""


def normalize_id(raw: object) -> str | None:
    """The canonical form of a user or anonymous id, or None when it is absent or blank.

    Ids are trimmed; ids that are e-mail addresses are lower-cased (mail providers treat them
    case-insensitively, CRMs export them in any case). Numbers are stringified as Segment does.
    """
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # as the Segment schema stringifies 42.0: "42"
    text = str(raw).strip()
    if not text:
        return None
    if len(text) > MAX_ID_LENGTH:
        raise InvalidIdentifier(f"identifier longer than {MAX_ID_LENGTH} characters")
    if _CONTROL.search(text):
        raise InvalidIdentifier("identifier contains control characters")
    if _EMAIL.fullmatch(text):
        return text.lower()
    return text


def anonymous_key(anonymous_id: str) -> str:
    """The profile key of a visitor known only by this (normalized) anonymousId."""
    return ANONYMOUS_PREFIX + anonymous_id


def is_anonymous_key(key: str) -> bool:
    return key.startswith(ANONYMOUS_PREFIX)


def identity_key(event: dict[str, object]) -> str:
    """The key that partitions an event for identity resolution.

    The anonymousId when there is one (the identity table maps it to a user), else the userId;
    an alias is keyed by its previousId, the identity it links. Expects normalized ids.
    """
    if event.get("type") == "alias":
        return str(event["previousId"])
    anonymous_id = event.get("anonymousId")
    if anonymous_id:
        return str(anonymous_id)
    return str(event["userId"])


@dataclass(frozen=True, slots=True)
class Resolution:
    """Who an event belongs to, and what it changes in the identity table."""

    #: The profile key the event is attributed to.
    user_key: str
    #: The user the event's identity key is now linked to (None: the table is unchanged).
    link: str | None = None
    #: An anonymous profile key to merge into `user_key` (first link of that anonymousId).
    merge_from: str | None = None


def resolve(event: dict[str, object], linked_user: str | None) -> Resolution:
    """Attribute an event (ids normalized) given the user its identity key is linked to, if any.

    - `alias(previousId, userId)` and any call carrying both `anonymousId` and `userId` link the
      anonymous id to the user; the first link also merges the anonymous profile into the user.
      A later link to another user (a shared device) re-links without merging.
    - A call with only an `anonymousId` belongs to the linked user, else to the anonymous profile.
    - A call with a `userId` belongs to that user.
    """
    user_id = event.get("userId")
    if event.get("type") == "alias" or (user_id and event.get("anonymousId")):
        user = str(user_id)
        linked_field = "previousId" if event.get("type") == "alias" else "anonymousId"
        anonymous = str(event[linked_field])
        if linked_user == user:
            return Resolution(user)
        merge_from = anonymous_key(anonymous) if linked_user is None else None
        return Resolution(user, link=user, merge_from=merge_from)
    if user_id:
        return Resolution(str(user_id))
    return Resolution(linked_user or anonymous_key(str(event["anonymousId"])))
