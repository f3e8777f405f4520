"""People and their roles: what a sign-in through the identity provider changes, roles given and taken in
Relay, and the events an audit log records (``on_signed_in``, ``on_signed_out``, ``on_roles_changed``: the
one place each is announced).

- Roles from groups: RELAY_OIDC_ROLES maps the provider's groups to roles (``RoleMapping``); they are
  replaced at each sign-in. A person whose groups changed since their last sign-in has every other sign-in
  ended: what those were allowed was decided on the old groups.
- Roles given in Relay (`relay people grant`) add to those; taking one away ends the person's sign-ins at
  once, so no open page keeps a role its person no longer has."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from app.core.config import RelayConfig
from app.stores.audit import OK, Action, Actor, ActorKind, AuditLog, Target
from app.stores.people import EVERY_TENANT, Grant, PeopleStore, Person, Role, RoleSource
from app.stores.sign_ins import SignInMethod, SignInStore
from app.stores.tenants import TenantStore

log = logging.getLogger("relay.people")


class Needs(Protocol):
    audit: AuditLog
    config: RelayConfig
    people: PeopleStore
    sign_ins: SignInStore
    tenants: TenantStore


# -- the mapping from groups to roles -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoleMapping:
    entries: tuple[tuple[str, Grant], ...]
    """(group, the grant it gives), in the order written."""

    @classmethod
    def parse(cls, text: str) -> RoleMapping:
        """RELAY_OIDC_ROLES: ``GROUP=ROLE`` entries separated by ``;`` or new lines; ROLE is ``operator`` or
        ``TENANT:viewer|member|admin``. Raises ValueError naming the entry that is not right."""
        entries = []
        for raw in text.replace("\n", ";").split(";"):
            if not (entry := raw.strip()):
                continue
            group, equals, role_text = entry.rpartition("=")
            group, role_text = group.strip(), role_text.strip()
            if not equals or not group:
                raise ValueError(f"RELAY_OIDC_ROLES: {entry!r} is not GROUP=ROLE")
            entries.append((group, Grant(_role(entry, role_text), *_tenant(role_text))))
        return cls(tuple(entries))

    def grants(self, groups: tuple[str, ...]) -> list[Grant]:
        held = set(groups)
        return [grant for group, grant in self.entries if group in held]


def _role(entry: str, text: str) -> Role:
    name = text.rpartition(":")[2] if ":" in text else text
    try:
        role = Role(name)
    except ValueError:
        raise ValueError(
            f"RELAY_OIDC_ROLES: {entry!r} names no role (operator, or TENANT:viewer|member|admin)"
        ) from None
    if (role is Role.OPERATOR) != (":" not in text):
        raise ValueError(
            f"RELAY_OIDC_ROLES: {entry!r}: operator holds across tenants (no TENANT:), "
            "the others are TENANT:ROLE"
        )
    return role


def _tenant(text: str) -> tuple[str, RoleSource]:
    tenant_id = text.rpartition(":")[0].strip() if ":" in text else EVERY_TENANT
    return tenant_id or EVERY_TENANT, RoleSource.GROUPS


def mapping(config: RelayConfig) -> RoleMapping:
    return RoleMapping.parse(config.oidc_roles)


def groups_of(claims: dict, claim: str) -> tuple[str, ...]:
    """The group claim as a tuple of strings (providers send a list, some a single string)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(sorted({str(v) for v in value}))
    return ()


# -- what a person may do --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Roles:
    """A person's roles now: the highest per tenant, from both sources."""

    grants: tuple[Grant, ...]

    @property
    def operator(self) -> bool:
        return any(g.role is Role.OPERATOR for g in self.grants)

    def in_tenant(self, tenant_id: str) -> Role | None:
        if self.operator:
            return Role.OPERATOR
        held = [g.role for g in self.grants if g.tenant_id == tenant_id]
        return max(held, key=lambda r: r.rank) if held else None

    def describe(self, names: dict[str, str] | None = None) -> str:
        """For the page that refuses someone: what they have, in words (tenants by ``names`` where given)."""
        names = names or {}
        if not self.grants:
            return "no role in Relay"
        best: dict[str, Role] = {}
        for grant in self.grants:
            held = best.get(grant.tenant_id)
            if held is None or grant.role.rank > held.rank:
                best[grant.tenant_id] = grant.role
        return ", ".join(
            "operator" if tenant == EVERY_TENANT else f"{role} of {names.get(tenant, tenant)}"
            for tenant, role in sorted(best.items())
        )


def roles(ctx: Needs, person_id: str) -> Roles:
    return Roles(tuple(ctx.people.grants(person_id)))


def describe(ctx: Needs, held: Roles) -> str:
    """``held`` in words, naming tenants by their names."""
    return held.describe({t.tenant_id: t.name for t in ctx.tenants.list()})


# -- signing in and out ----------------------------------------------------------------------------


def signed_in(
    ctx: Needs, issuer: str, claims: dict, fingerprint: str, origin: str = ""
) -> tuple[Person, Roles, str]:
    """A person the identity provider vouched for (their ID token's claims, already validated): their
    record and group roles brought up to date, and a new sign-in; returns the person, their roles and the
    sign-in's id. Groups changed since the last sign-in end the person's other sign-ins first."""
    config = ctx.config
    groups = groups_of(claims, config.oidc_group_claim)
    person, before = ctx.people.save(
        issuer,
        str(claims["sub"]),
        str(claims.get("email") or ""),
        str(claims.get("name") or claims.get("preferred_username") or ""),
        groups,
    )
    old_roles = roles(ctx, person.person_id)
    if before is not None and before.groups != groups:
        ended = ctx.sign_ins.end_person(person.person_id)
        log.info(
            "groups changed: sign-ins ended",
            extra={"person": person.person_id, "ended": ended},
        )
    ctx.people.replace_from_groups(
        person.person_id, _in_tenants(ctx, mapping(config).grants(groups))
    )
    now = roles(ctx, person.person_id)
    if now != old_roles:
        on_roles_changed(ctx, person, old_roles, now, by="identity provider groups", origin=origin)
    session_id = ctx.sign_ins.start(
        SignInMethod.OPENID_CONNECT,
        fingerprint,
        config.admin_session_seconds,
        person.person_id,
    )
    on_signed_in(ctx, person, SignInMethod.OPENID_CONNECT, origin)
    return person, now, session_id


def _in_tenants(ctx: Needs, grants: list[Grant]) -> list[Grant]:
    """The mapping's tenants (a name or an id) as tenant ids; a tenant that does not exist gives nothing."""
    found = []
    for given in grants:
        if given.tenant_id == EVERY_TENANT:
            found.append(given)
        elif tenant := ctx.tenants.find(given.tenant_id):
            found.append(Grant(given.role, tenant.tenant_id, given.source))
        else:
            log.warning("RELAY_OIDC_ROLES names no tenant %r: skipped", given.tenant_id)
    return found


def break_glass(ctx: Needs, fingerprint: str, origin: str = "") -> str:
    """A sign-in with the admin token: an operator, marked as break-glass."""
    session_id = ctx.sign_ins.start(
        SignInMethod.BREAK_GLASS, fingerprint, ctx.config.admin_session_seconds
    )
    on_signed_in(ctx, None, SignInMethod.BREAK_GLASS, origin)
    return session_id


def sign_out(ctx: Needs, session_id: str, origin: str = "") -> None:
    found = ctx.sign_ins.get(session_id)
    ctx.sign_ins.end(session_id)
    if found is not None:
        person = ctx.people.get(found.person_id) if found.person_id else None
        on_signed_out(ctx, person, found.method, origin)


# -- roles given in Relay --------------------------------------------------------------------------


def grant(
    ctx: Needs, person: Person, role: Role, tenant_id: str = EVERY_TENANT, origin: str = "cli"
) -> Roles:
    """``role`` given in Relay (in ``tenant_id``; operator in every tenant)."""
    if (role is Role.OPERATOR) != (tenant_id == EVERY_TENANT):
        raise ValueError("operator holds across tenants; the other roles need a tenant")
    before = roles(ctx, person.person_id)
    ctx.people.give(person.person_id, role, tenant_id)
    after = roles(ctx, person.person_id)
    if after != before:
        on_roles_changed(ctx, person, before, after, by="relay", origin=origin)
    return after


def revoke(
    ctx: Needs, person: Person, tenant_id: str = EVERY_TENANT, origin: str = "cli"
) -> tuple[Role | None, int]:
    """The role given in Relay in ``tenant_id`` taken away, and every sign-in of the person ended at once;
    returns the role taken (None: none was given in Relay there) and how many sign-ins ended."""
    before = roles(ctx, person.person_id)
    taken = ctx.people.take(person.person_id, tenant_id)
    if taken is None:
        return None, 0
    ended = ctx.sign_ins.end_person(person.person_id)
    on_roles_changed(ctx, person, before, roles(ctx, person.person_id), by="relay", origin=origin)
    return taken, ended


# -- events (what an audit log records) ------------------------------------------------------------
# ``origin``: where the change came from, the client's address for a browser, ``cli`` for `relay people`.


def actor(person: Person | None) -> Actor:
    """Who an audit entry names for a person signed in, or for the holder of the admin token (None)."""
    if person is None:
        return Actor(ActorKind.OPERATOR_TOKEN, "admin", name="admin token")
    return Actor(ActorKind.PERSON, person.person_id, name=person.label)


def on_signed_in(ctx: Needs, person: Person | None, method: SignInMethod, origin: str) -> None:
    """A sign-in happened (``person`` None: break-glass, with the admin token)."""
    _session_event(ctx, Action.SIGNED_IN, person, method, origin)


def on_signed_out(ctx: Needs, person: Person | None, method: SignInMethod, origin: str) -> None:
    _session_event(ctx, Action.SIGNED_OUT, person, method, origin)


def _session_event(
    ctx: Needs, action: Action, person: Person | None, method: SignInMethod, origin: str
) -> None:
    """A sign-in or sign-out, in the operators' audit log and the log."""
    ctx.audit.append(actor(person), action, Target("session", str(method)), OK, origin, "")
    person_id = person.person_id if person else ""
    words = "signed in" if action is Action.SIGNED_IN else "signed out"
    log.info(words, extra={"person": person_id, "method": str(method), "origin": origin})


def on_roles_changed(
    ctx: Needs, person: Person, before: Roles, after: Roles, by: str, origin: str
) -> None:
    """``by``: ``relay`` (a grant or revoke) or ``identity provider groups`` (a sign-in)."""
    target = Target("person", person.person_id, person.label)
    by_whom = Actor(ActorKind.SYSTEM, by, name=by)
    for tenant in {g.tenant_id for g in (*before.grants, *after.grants)}:
        # an operator's role is every tenant's: it goes in the operators' log alone
        tenant_id = "" if tenant == EVERY_TENANT else tenant
        ctx.audit.append(by_whom, Action.ROLE_CHANGED, target, OK, origin, tenant_id)
    log.info(
        "roles changed",
        extra={
            "person": person.person_id,
            "before": before.describe(),
            "after": after.describe(),
            "by": by,
            "origin": origin,
        },
    )
