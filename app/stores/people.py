"""People who sign in with OpenID Connect, and their roles.

A person is known by the identity provider's (issuer, subject) pair, the only pair OpenID Connect promises
stays the same: their id here is a digest of it, so the first sign-in and every later one find the same
record without an index to keep in step. Email and name are what the provider said at the last sign-in
(for display and for `relay people grant EMAIL`), never used to decide who someone is.

Roles are kept per source: ``groups`` (the provider's group claim by RELAY_OIDC_ROLES, replaced at each
sign-in) and ``relay`` (given with `relay people grant`). A person's role in a tenant is the highest of
the two; ``operator`` holds across tenants.

Keys: ``person:{id}`` (hash), ``person-roles:{id}`` (hash ``{source}|{tenant}`` -> role; tenant ``*`` for
operator), ``people`` (sorted set of ids by first sign-in), ``person-email:{email}`` (set of ids)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from enum import StrEnum

from redis import Redis

EVERY_TENANT = "*"


class Role(StrEnum):
    """In rising order: each may do what the ones before it may."""

    VIEWER = "viewer"
    MEMBER = "member"
    """Submit, retry, cancel."""
    ADMIN = "admin"
    """Destinations, keys, budgets, members."""
    OPERATOR = "operator"
    """Every tenant, and the operators' dashboard."""

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class RoleSource(StrEnum):
    GROUPS = "groups"
    """The provider's group claim, mapped by RELAY_OIDC_ROLES."""
    RELAY = "relay"
    """Given in Relay (`relay people grant`)."""


@dataclass(frozen=True, slots=True)
class Grant:
    role: Role
    tenant_id: str = EVERY_TENANT
    """``*`` for operator."""
    source: RoleSource = RoleSource.RELAY

    def __str__(self) -> str:
        where = "every tenant" if self.tenant_id == EVERY_TENANT else self.tenant_id
        return f"{self.role} of {where} ({self.source})"


@dataclass(frozen=True, slots=True)
class Person:
    person_id: str
    issuer: str
    subject: str
    email: str
    name: str
    groups: tuple[str, ...]
    first_signed_in_at: float
    last_signed_in_at: float

    @property
    def label(self) -> str:
        return self.email or self.name or self.subject


def person_id(issuer: str, subject: str) -> str:
    return "psn_" + hashlib.sha256(f"{issuer}\0{subject}".encode()).hexdigest()[:24]


class PeopleStore:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix

    def _key(self, kind: str, ident: str) -> str:
        return f"{self._prefix}{kind}:{ident}"

    def save(
        self, issuer: str, subject: str, email: str, name: str, groups: tuple[str, ...]
    ) -> tuple[Person, Person | None]:
        """The person as the provider describes them now, and as they were before (None: first sign-in)."""
        before = self.get(person_id(issuer, subject))
        now = time.time()
        person = Person(
            person_id(issuer, subject),
            issuer,
            subject,
            email,
            name,
            tuple(groups),
            before.first_signed_in_at if before else now,
            now,
        )
        pipe = self._redis.pipeline()
        pipe.hset(
            self._key("person", person.person_id),
            mapping={
                "issuer": issuer,
                "subject": subject,
                "email": email,
                "name": name,
                "groups": json.dumps(list(groups)),
                "first_signed_in_at": person.first_signed_in_at,
                "last_signed_in_at": now,
            },
        )
        pipe.zadd(
            self._key("people", "all"), {person.person_id: person.first_signed_in_at}, nx=True
        )
        if before and before.email and before.email != email:
            pipe.srem(self._key("person-email", before.email.lower()), person.person_id)
        if email:
            pipe.sadd(self._key("person-email", email.lower()), person.person_id)
        pipe.execute()
        return person, before

    def get(self, ident: str) -> Person | None:
        raw = self._redis.hgetall(self._key("person", ident))
        if not raw:
            return None
        return Person(
            ident,
            raw["issuer"],
            raw["subject"],
            raw.get("email", ""),
            raw.get("name", ""),
            tuple(json.loads(raw.get("groups", "[]"))),
            float(raw["first_signed_in_at"]),
            float(raw["last_signed_in_at"]),
        )

    def find(self, who: str) -> list[Person]:
        """By id, else by email (several people may share one)."""
        if found := self.get(who):
            return [found]
        ids = sorted(self._redis.smembers(self._key("person-email", who.lower())))
        return [p for p in map(self.get, ids) if p is not None]

    def list(self) -> list[Person]:
        ids = self._redis.zrange(self._key("people", "all"), 0, -1)
        return [p for p in map(self.get, ids) if p is not None]

    # -- roles ----------------------------------------------------------------------------------

    def grants(self, ident: str) -> list[Grant]:
        raw = self._redis.hgetall(self._key("person-roles", ident))
        found = []
        for field, role in raw.items():
            source, _, tenant_id = field.partition("|")
            found.append(Grant(Role(role), tenant_id, RoleSource(source)))
        return sorted(found, key=lambda g: (g.tenant_id, -Role(g.role).rank, g.source))

    def replace_from_groups(self, ident: str, grants: list[Grant]) -> None:
        """The group-claim roles become ``grants`` (the highest per tenant); roles given in Relay stay."""
        key = self._key("person-roles", ident)
        old = [f for f in self._redis.hkeys(key) if f.startswith(f"{RoleSource.GROUPS}|")]
        pipe = self._redis.pipeline()
        if old:
            pipe.hdel(key, *old)
        best: dict[str, Role] = {}
        for grant in grants:
            held = best.get(grant.tenant_id)
            best[grant.tenant_id] = (
                grant.role if held is None or grant.role.rank > held.rank else held
            )
        if best:
            pipe.hset(key, mapping={f"{RoleSource.GROUPS}|{t}": r for t, r in best.items()})
        pipe.execute()

    def give(self, ident: str, role: Role, tenant_id: str) -> None:
        """A role given in Relay (one per tenant: it replaces the one given before)."""
        self._redis.hset(self._key("person-roles", ident), f"{RoleSource.RELAY}|{tenant_id}", role)

    def take(self, ident: str, tenant_id: str) -> Role | None:
        """The role given in Relay in ``tenant_id`` removed; what it was (None: there was none)."""
        key, field = self._key("person-roles", ident), f"{RoleSource.RELAY}|{tenant_id}"
        pipe = self._redis.pipeline()
        pipe.hget(key, field)
        pipe.hdel(key, field)
        held, _ = pipe.execute()
        return Role(held) if held else None
