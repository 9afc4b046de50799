"""User state in Redis, updated atomically per event by one Lua script.

All of a user's keys share the hash tag ``{<user>}`` (one cluster slot):

* ``redrec:profile:{u}``   HASH  attributes (age, gender, occupation, loc) and the session
  vector ``vec`` (FLOAT32, indexed for "people like you", saved every few events); it is
  indexed, so the per-event counters live elsewhere (a write here re-indexes the vector)
* ``redrec:user:{u}:meta``   HASH  ``n`` events applied, ``last`` event time
* ``redrec:user:{u}:recent`` LIST  the latest interactions ``item, ts, weight, positive``,
  newest first (capped); the session vector is their time-decayed weighted average
* ``redrec:user:{u}:excl``   ZSET  item -> until when it is excluded (inf: forever)
* ``redrec:user:{u}:aff``    HASH  category -> time-weighted affinity
* ``redrec:user:{u}:seen``   ZSET  ids of applied events (idempotency window)
* ``redrec:user:{u}:log``    STREAM every applied event, the durable log training reads

Global keys (idempotent updates, outside the script): ``redrec:users`` (SET of user ids),
``redrec:popular`` (ZSET item -> time-weighted popularity) and, per category value (lower
case), ``redrec:popular:cat:<value>`` (the same within that category).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import redis

from redrec.exceptions import InvalidInput
from redrec.store import lean
from redrec.store._errors import translate_errors
from redrec.store.index import Command, Prepared, VectorIndex
from redrec.store.keys import user_key
from redrec.store.schema import IndexSpec

__all__ = ["Interaction", "TrackOp", "UserState", "UserStore"]

NS = "redrec"
PROFILE_INDEX = "redrec_profiles"
PROFILE_PREFIX = f"{NS}:profile:"
ATTRIBUTES = ("age", "gender", "occupation", "loc", "zip")  # what a profile may record
_PROFILE_READ = [*ATTRIBUTES, "vn"]

# KEYS: profile recent excl aff seen log meta
# ARGV: event_id user item ts weight cats excl_until recent_cap dedupe payload positive aff_inc
#       vector_every
# Returns 0 for a duplicate, else {events, events at the last vector save[, recent
# entries when that save is vector_every or more events old, or the user is new]}.
# The script does no vector math (that made it ~20x slower and re-indexed the profile
# vector on every event): the session vector is derived from the recent entries, which
# carry each item's timestamp and weight, when recommending.
_TRACK_LUA = r"""
local profile, recent, excl, aff, seen, log = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local meta = KEYS[7]
local eid, user, item = ARGV[1], ARGV[2], ARGV[3]
local ts, w = tonumber(ARGV[4]), ARGV[5]
local cats, excl_until = ARGV[6], ARGV[7]
local cap, window = tonumber(ARGV[8]), tonumber(ARGV[9])
local payload, positive, aff_inc = ARGV[10], ARGV[11], tonumber(ARGV[12])

if redis.call('ZSCORE', seen, eid) then return 0 end
redis.call('ZADD', seen, ts, eid)
if redis.call('ZCARD', seen) > window then
  redis.call('ZREMRANGEBYRANK', seen, 0, -window - 1)
end
redis.call('XADD', log, '*', 'e', payload)
if tonumber(w) ~= 0 then
  redis.call('LPUSH', recent, item .. '\31' .. ARGV[4] .. '\31' .. w .. '\31' .. positive)
  redis.call('LTRIM', recent, 0, cap - 1)
end
if excl_until ~= '' then
  redis.call('ZADD', excl, excl_until, item)
end
redis.call('ZREMRANGEBYSCORE', excl, '-inf', '(' .. ts)
if cats ~= '' and aff_inc ~= 0 then
  for cat in string.gmatch(cats, '([^\31]+)') do
    redis.call('HINCRBYFLOAT', aff, cat, aff_inc)
  end
end
local n = redis.call('HINCRBY', meta, 'n', 1)
redis.call('HSET', meta, 'last', ts)
local vn = tonumber(redis.call('HGET', profile, 'vn') or '-1')
local every = tonumber(ARGV[13])
if vn < 0 or n <= every or n - vn >= every then
  return {n, vn, redis.call('LRANGE', recent, 0, 19)}
end
return {n, vn}
"""


@dataclass(frozen=True)
class TrackOp:
    """Everything the script needs for one event (computed by the engine)."""

    event_id: str
    user_id: str
    item_id: str
    timestamp: float
    weight: float
    categories: Sequence[str]
    exclude_until: float | None  # None: no exclusion; inf: forever
    positive: bool
    affinity_inc: float
    payload: str
    popularity_inc: float


class Interaction(NamedTuple):
    """One entry of a user's recent list (a tuple: built by the thousand per second)."""

    item_id: str
    timestamp: float
    weight: float
    positive: bool


@dataclass
class UserState:
    """A user's state as read in one round trip. ``recent`` holds the latest positive
    items (newest first); ``history`` every recent interaction with time and weight."""

    user_id: str
    history: list[Interaction]
    recent: list[str]
    excluded: set[str]
    affinity: dict[str, float]
    events: int
    attributes: dict[str, str] = field(default_factory=dict)
    vector_events: int = -1  # the event count when the profile vector was last saved

    @property
    def is_new(self) -> bool:
        return self.events == 0


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _strings(rows: Sequence[Any]) -> list[str]:
    return [v.decode() if type(v) is bytes else str(v) for v in rows]


def _popular_key(category: str) -> str:
    return f"{NS}:popular:cat:{category.lower()}"


def _interactions(rows: Iterable[Any]) -> list[Interaction]:
    """Recent-list entries (``item, ts, weight, positive`` joined by \\x1f; a bare item
    id is a positive view of unknown time) as interactions."""
    out = []
    for raw in rows:
        parts = (raw.decode() if type(raw) is bytes else str(raw)).split("\x1f")
        if len(parts) == 4:
            out.append(Interaction(parts[0], float(parts[1]), float(parts[2]), parts[3] == "1"))
        else:
            out.append(Interaction(parts[0], 0.0, 1.0, True))
    return out


class UserStore:
    """Reads and writes user state; the engine's only way to Redis for users."""

    def __init__(self, client: redis.Redis, dim: int, *, recent_cap: int = 50,
                 dedupe_window: int = 5000) -> None:
        self.client = client
        self.dim = dim
        self.recent_cap = recent_cap
        self.dedupe_window = dedupe_window
        self.vector_every = 5  # events between saves of the session vector
        self._script = client.register_script(_TRACK_LUA)
        self.profiles = VectorIndex(client, IndexSpec.from_dict({
            "index": {"name": PROFILE_INDEX, "prefix": PROFILE_PREFIX, "storage_type": "hash"},
            "fields": [
                {"name": "uid", "type": "tag"},
                {"name": "gender", "type": "tag"},
                {"name": "occupation", "type": "tag"},
                {"name": "age", "type": "numeric"},
                {"name": "loc", "type": "geo"},
                # Every save of a session vector re-indexes the profile (an HNSW delete
                # and insert, every few events per user): on 10k profiles ~600 us of
                # Redis time at EF_CONSTRUCTION 64, ~240 us at 32, half of what an event
                # cost Redis before. The searches keep EF_RUNTIME 64, and the top-20
                # recall of "people like you" moves little (benchmarks/README.md).
                {"name": "vec", "type": "vector", "attrs": {
                    "dims": dim, "algorithm": "hnsw", "distance_metric": "cosine",
                    "m": 16, "ef_construction": 32}},
            ],
        }))

    # -- keys --------------------------------------------------------------------------

    @staticmethod
    def profile_key(user_id: str) -> str:
        return f"{PROFILE_PREFIX}{{{user_id}}}"

    @staticmethod
    def keys(user_id: str) -> list[str]:
        return [UserStore.profile_key(user_id)] + [
            user_key(NS, user_id, part)
            for part in ("recent", "excl", "aff", "seen", "log", "meta")
        ]

    def ensure_index(self) -> None:
        """Create the profile index; an existing one of another dimension is an error."""
        if self.profiles.exists():
            from redrec.store.store import Store

            have = Store(self.client).index(PROFILE_INDEX).spec.vector_field("vec").dims
            if have != self.dim:
                from redrec.exceptions import SchemaError

                raise SchemaError(
                    f"user profiles hold {have}-d vectors but the catalogue has {self.dim}-d "
                    "ones; drop the index redrec_profiles (and user data) to switch catalogue"
                )
            return
        try:
            self.profiles.create()
        except Exception as exc:  # a concurrent process created it first
            if not self.profiles.exists():
                raise exc

    # -- writes -------------------------------------------------------------------------

    def apply(
        self,
        ops: Sequence[TrackOp],
        profile_writes: Callable[[dict[str, tuple[int, list[Interaction]]]], list[Command]]
        | None = None,
        *,
        chunk: int = 100,
    ) -> list[bool]:
        """Apply events (one script call each); returns which were newly applied. Users
        whose saved session vector is ``vector_every`` or more events old are passed to
        ``profile_writes`` (user -> events, latest interactions); the writes it returns
        go out with the global counters.

        The calls are pipelined in chunks of ``chunk``: while Redis runs a chunk's
        scripts, Python packs the next one, then reads each chunk's replies and sends
        its counters and profile writes while Redis runs the later chunks (the work of
        the two processes overlaps instead of alternating). Replies are read in order,
        so a user's events still apply in the order given."""
        if not ops:
            return []
        applied: list[bool] = []
        with translate_errors():
            sent = []
            for start in range(0, len(ops), chunk):
                part = ops[start:start + chunk]
                calls = [("EVALSHA", self._script.sha, 7, *self.keys(op.user_id),
                          *self._args(op)) for op in part]
                sent.append((part, calls, lean.send(self.client, calls)))
            tails = []
            for part, calls, pending in sent:
                replies = self._script_replies(pending, calls)
                ok = [bool(r) for r in replies]
                applied += ok
                stale = {op.user_id: (int(r[0]), _interactions(r[2]))
                         for op, r in zip(part, replies, strict=True) if r and len(r) > 2}
                cmds: list[Sequence[Any]] = []
                for op, fresh in zip(part, ok, strict=True):
                    if not fresh:
                        continue
                    cmds.append(("SADD", f"{NS}:users", op.user_id))
                    if op.popularity_inc:
                        cmds.append(("ZINCRBY", f"{NS}:popular", op.popularity_inc, op.item_id))
                        cmds += [("ZINCRBY", _popular_key(c), op.popularity_inc, op.item_id)
                                 for c in op.categories]
                for cmd in profile_writes(stale) if stale and profile_writes else []:
                    cmds.append(cmd.command())
                if cmds:
                    tails.append(lean.send(self.client, cmds))
            for pending in tails:
                pending.result()
        return applied

    def _script_replies(self, pending: lean.Pending, calls: list[Sequence[Any]]) -> list[Any]:
        """A chunk's script replies; calls refused with NOSCRIPT (a restarted or flushed
        server) are run again, alone, once the script is loaded."""
        try:
            return pending.result()
        except redis.exceptions.NoScriptError:
            replies = list(pending.replies or [])
            if len(replies) != len(calls):
                raise
            self.client.script_load(_TRACK_LUA)
            redo = [n for n, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
            for n, r in zip(redo, lean.execute(self.client, [calls[n] for n in redo]), strict=True):
                replies[n] = r
            for r in replies:
                if isinstance(r, redis.exceptions.RedisError):
                    raise r from None
            return replies

    def _args(self, op: TrackOp) -> list[Any]:
        until = "" if op.exclude_until is None else (
            "+inf" if math.isinf(op.exclude_until) else repr(op.exclude_until))
        return [op.event_id, op.user_id, op.item_id, repr(op.timestamp), repr(op.weight),
                "\x1f".join(op.categories), until, self.recent_cap, self.dedupe_window,
                op.payload, "1" if op.positive else "0", repr(op.affinity_inc),
                self.vector_every]

    def set_attributes(self, user_id: str, attributes: dict[str, Any]) -> None:
        """Record a user's attributes (:data:`ATTRIBUTES`; None or "" are left out).
        Every value is checked by :func:`profile_value` before anything is written."""
        unknown = set(attributes) - set(ATTRIBUTES)
        if unknown:
            raise InvalidInput(f"unknown user attribute(s) {sorted(unknown)}; use {sorted(ATTRIBUTES)}")
        mapping: dict[str, str] = {"uid": user_id}
        for k, v in attributes.items():
            if v is not None and v != "":
                mapping[k] = profile_value(k, v)
        with translate_errors():
            self.client.hset(self.profile_key(user_id), mapping=mapping)
            self.client.sadd(f"{NS}:users", user_id)

    def forget(self, user_id: str) -> None:
        with translate_errors():
            self.client.delete(*self.keys(user_id))
            self.client.srem(f"{NS}:users", user_id)

    # -- reads ----------------------------------------------------------------------------

    def state(self, user_id: str, now: float, recent_n: int | None = None) -> UserState:
        return self.states([user_id], now, recent_n)[0]

    def states(self, user_ids: Sequence[str], now: float,
               recent_n: int | None = None) -> list[UserState]:
        return self.states_with(user_ids, now, recent_n)[0]

    def states_with(self, user_ids: Sequence[str], now: float, recent_n: int | None = None,
                    also: Sequence[Command] = ()) -> tuple[list[UserState], list[Any]]:
        """Users' states, and the results of ``also`` sent in the same round trip."""
        n = self.recent_cap if recent_n is None else recent_n
        with translate_errors():
            cmds: list[Sequence[Any]] = []
            for u in user_ids:
                profile, recent, excl, aff, _, _, meta = self.keys(u)
                cmds += [("HMGET", profile, *_PROFILE_READ), ("LRANGE", recent, 0, n - 1),
                         ("ZRANGEBYSCORE", excl, f"({now!r}", "+inf"), ("HGETALL", aff),
                         ("HGET", meta, "n")]
            cmds += [cmd.command() for cmd in also]
            rows = lean.execute(self.client, cmds)
        extra = [cmd.finish(r) for cmd, r in zip(also, rows[5 * len(user_ids):], strict=True)]
        out = []
        for i, u in enumerate(user_ids):
            prof, recent, excl, aff, count = rows[5 * i: 5 * i + 5]
            if isinstance(aff, list):  # RESP2 (store.lean): a flat field, value list
                aff = dict(zip(aff[::2], aff[1::2], strict=True))
            history = _interactions(recent)
            out.append(UserState(
                user_id=u, history=history,
                recent=list(dict.fromkeys(h.item_id for h in history if h.positive)),
                excluded={_s(x) for x in excl},
                affinity={_s(k): float(v) for k, v in aff.items()},
                events=int(count or 0),
                attributes={k: _s(v) for k, v in zip(ATTRIBUTES, prof, strict=False)
                            if v is not None},
                vector_events=int(prof[-1] if prof[-1] is not None else -1),
            ))
        return out, extra

    def save_commands(self, vectors: dict[str, tuple[np.ndarray | None, int, Sequence[str]]]
                      ) -> list[Command]:
        """Writes that store users' session vectors in their profiles (indexed for
        "people like you") with their latest positive items, which a neighbour search
        returns in the same reply; sent with other commands of a round trip. Written every
        few events, not per event: each write re-indexes the vector."""
        out = []
        for user_id, (vec, events, items) in vectors.items():
            key = self.profile_key(user_id)
            fields: list[Any] = ["vn", events, "uid", user_id, "items", "\x1f".join(items[:20])]
            if vec is None:
                out.append(Command("HDEL", key, "vec"))
            else:
                fields += ["vec", np.asarray(vec, dtype="<f4").tobytes()]
            out.append(Command("HSET", key, *fields))
        return out

    def prepare_neighbours(self, vector: np.ndarray | None, k: int, *, user_id: str,
                           attributes: dict[str, str] | None = None) -> list[Prepared]:
        """Queries for users like ``user_id``: nearest session vectors, and (when the
        user's age, gender or occupation are known) the nearest among users who share
        them, or any such users for someone with no vector yet. Each hit carries ``items``
        (that user's latest positive items); its id is ``{user}``. The KNN replies come
        unsorted (sorting them in Redis costs more than here)."""
        out = []
        excl = [f"{{{user_id}}}"]
        ret = ["items"]
        if vector is not None:
            out.append(self.profiles.prepare_knn(vector, k, exclude=excl, return_fields=ret,
                                                 sort=False))
        demo = demographic_filter(attributes or {})
        if demo is not None:
            if vector is not None:
                out.append(self.profiles.prepare_knn(vector, k, filters=demo, exclude=excl,
                                                     return_fields=ret, sort=False))
            else:
                out.append(self.profiles.find(demo, return_fields=ret, limit=k))
        return out

    def prepare_popular(self, n: int, category: str | None = None) -> Command:
        """The ``n`` most popular item ids (within ``category``, a value of the engine's
        category field, when given), to send in a round trip with other commands."""
        key = f"{NS}:popular" if category is None else _popular_key(category)
        return Command("ZREVRANGE", key, 0, max(0, n - 1), finish=_strings)

    def popular(self, n: int) -> list[str]:
        """The ``n`` most popular item ids, most popular first."""
        cmd = self.prepare_popular(n)
        with translate_errors():
            return cmd.finish(self.client.execute_command(*cmd.command()))

    def all_users(self) -> list[str]:
        with translate_errors():
            return sorted(_s(u) for u in self.client.smembers(f"{NS}:users"))

    def events(self, user_id: str) -> list[dict[str, Any]]:
        """The user's durable event log, oldest first."""
        with translate_errors():
            rows = self.client.xrange(user_key(NS, user_id, "log"))
        return [json.loads(fields[b"e"]) for _, fields in rows]

    def all_events(self, batch: int = 500) -> Iterable[dict[str, Any]]:
        """Every user's log (user by user; within a user, oldest first)."""
        users = self.all_users()
        for start in range(0, len(users), batch):
            chunk = users[start:start + batch]
            with translate_errors():
                pipe = self.client.pipeline(transaction=False)
                for u in chunk:
                    pipe.xrange(user_key(NS, u, "log"))
                rows = pipe.execute()
            for entries in rows:
                for _, fields in entries:
                    yield json.loads(fields[b"e"])




def demographic_filter(attributes: dict[str, str]) -> dict[str, Any] | None:
    """Users who share the known demographic attributes: same gender and occupation,
    age within five years."""
    clauses: list[dict[str, Any]] = []
    for name in ("gender", "occupation"):
        if attributes.get(name):
            clauses.append({name: attributes[name]})
    try:
        age = float(attributes["age"])
        clauses.append({"age": {"gte": age - 5, "lte": age + 5}})
    except (KeyError, ValueError):
        pass
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"and": clauses}


def profile_value(name: str, value: Any) -> str:
    """``value`` as a profile hash stores attribute ``name``. The profile index holds
    ``age`` as NUMERIC and ``loc`` as GEO, and a hash whose value does not parse drops
    out of the index silently (its session vector with it), so those two are checked:
    InvalidInput for an age that is not a number in 0..200 or a loc that is not
    ``lon,lat`` (or ``{"lon", "lat"}``) within range. Ages print as "24", not "24.0"."""
    if name == "age":
        try:
            age = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"age must be a number, got {value!r}") from None
        if not 0 <= age < 200:
            raise InvalidInput(f"age must be between 0 and 200, got {age:g}")
        return str(int(age)) if age.is_integer() else repr(age)
    if name == "loc":
        try:
            lon, lat = ((float(value["lon"]), float(value["lat"])) if isinstance(value, dict)
                        else (float(p) for p in str(value).split(",")))
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(f"loc must be 'lon,lat' or {{lon, lat}}, got {value!r}") from None
        if not (-180 <= lon <= 180 and -85.05112878 <= lat <= 85.05112878):
            raise InvalidInput(f"loc {lon},{lat} is outside the valid range")
        return f"{lon!r},{lat!r}"
    return str(value)
