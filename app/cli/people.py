"""People and their roles: `relay people list`, `grant`, `revoke`, and `provider` (what to register at
the identity provider)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from app.domain import people
from app.stores import context
from app.stores.people import EVERY_TENANT, Person, Role


def _person_or_fail(who: str) -> Person:
    found = context.current().people.find(who)
    if not found:
        raise click.ClickException(
            f"no one with id or email {who!r} has signed in yet: they sign in once (and are refused), "
            "then they can be given a role"
        )
    if len(found) > 1:
        ids = ", ".join(p.person_id for p in found)
        raise click.ClickException(f"several people have the email {who!r}: name one by id ({ids})")
    return found[0]


def _tenant_id(role: Role, tenant: str | None) -> str:
    if role is Role.OPERATOR:
        if tenant:
            raise click.ClickException("operator holds across tenants: give no --tenant")
        return EVERY_TENANT
    if not tenant:
        raise click.ClickException(f"{role} is a role in a tenant: give --tenant")
    found = context.current().tenants.find(tenant)
    if found is None:
        raise click.ClickException(f"no tenant named or with id {tenant!r}")
    return found.tenant_id


@click.group("people")
def people_group() -> None:
    """People who sign in with OpenID Connect, and their roles."""


@people_group.command("list")
def list_() -> None:
    """Everyone who has signed in, with their roles and where each comes from."""
    ctx = context.current()
    for person in ctx.people.list():
        seen = datetime.fromtimestamp(person.last_signed_in_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        grants = "; ".join(map(str, ctx.people.grants(person.person_id))) or "no role"
        click.echo(f"{person.person_id}  {person.label:<30} last sign-in {seen}  {grants}")


@people_group.command("grant")
@click.argument("who")
@click.argument("role", type=click.Choice([r.value for r in Role]))
@click.option("--tenant", help="The tenant (name or id) the role is in; none for operator.")
def grant(who: str, role: str, tenant: str | None) -> None:
    """Give WHO (a person id or email) ROLE, in Relay (added to the roles their groups give)."""
    chosen = Role(role)
    person = _person_or_fail(who)
    now = people.grant(context.current(), person, chosen, _tenant_id(chosen, tenant))
    click.echo(f"{person.label}: {people.describe(context.current(), now)}")


@people_group.command("revoke")
@click.argument("who")
@click.option("--tenant", help="The tenant (name or id); none for operator.")
@click.option("--operator", "operator", is_flag=True, help="Take the operator role given in Relay.")
def revoke(who: str, tenant: str | None, operator: bool) -> None:
    """Take away the role given in Relay to WHO in a tenant (or --operator); their sign-ins end now."""
    if operator == bool(tenant):
        raise click.ClickException("give either --tenant or --operator")
    person = _person_or_fail(who)
    tenant_id = _tenant_id(Role.OPERATOR if operator else Role.VIEWER, tenant)
    taken, ended = people.revoke(context.current(), person, tenant_id)
    if taken is None:
        raise click.ClickException(
            f"{person.label} has no role given in Relay there (a role from their groups is taken away "
            "at the identity provider: it applies at their next sign-in)"
        )
    now = people.roles(context.current(), person.person_id)
    click.echo(
        f"{person.label}: {taken} taken away; {ended} sign-in(s) ended; now {now.describe()}"
    )


@people_group.command("provider")
def provider() -> None:
    """What to register at the identity provider, and how its groups map to roles."""
    from app.web.oidc import redirect_uri

    config = context.current().config
    click.echo(f"redirect URI  {redirect_uri(config)}")
    click.echo(f"issuer        {config.oidc_issuer or '(RELAY_OIDC_ISSUER is not set)'}")
    click.echo(f"client id     {config.oidc_client_id or '(RELAY_OIDC_CLIENT_ID is not set)'}")
    click.echo(f"scopes        {config.oidc_scopes}")
    click.echo(f"group claim   {config.oidc_group_claim}")
    try:
        mapping = people.mapping(config)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for group, given in mapping.entries:
        where = "every tenant" if given.tenant_id == EVERY_TENANT else given.tenant_id
        click.echo(f"group {group!r} -> {given.role} of {where}")
