"""People sign in with OpenID Connect, against a real provider: the certified `oidc-provider` package run by
Node on loopback (tests/support/oidc_provider.py), through its own login and consent pages in chromium.
An operator lands on the dashboard; a person without the role is refused; signing out, a role taken away in
Relay and a change of groups end sign-ins; a forged state, a replayed code, a wrong nonce and a wrong PKCE
verifier are refused."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from playwright.sync_api import expect, sync_playwright

from app.core.config import RelayConfig
from app.domain.people import RoleMapping
from app.stores.audit import AuditFilter
from app.stores.people import EVERY_TENANT, Grant, Role, RoleSource
from app.web import create_app
from app.web.oidc import IdentityProvider, SignInRefused, redirect_uri
from app.web.sign_in import PENDING_KEY
from tests.relay.test_tenants import relay_cli
from tests.support import tools
from tests.support.dashboard import ADMIN_TOKEN, sign_in
from tests.support.oidc_provider import OpenIDProvider

ROLES = "relay-operators=operator; acme-admins=acme:admin; acme-staff=acme:viewer"


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    tools.require("npm")
    started = OpenIDProvider(tmp_path_factory.mktemp("oidc-provider"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def browser():
    executable = tools.require("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def oidc_relay(make_relay, provider):
    client_id, secret = f"relay-{secrets.token_hex(4)}", secrets.token_urlsafe(32)
    relay = make_relay(
        worker=False,
        admin_token=ADMIN_TOKEN,
        oidc_issuer=provider.issuer,
        oidc_client_id=client_id,
        oidc_client_secret=secret,
        oidc_roles=ROLES,
    )
    provider.add_client(client_id, secret, redirect_uri(relay.config))
    return relay


def _person(provider, groups: list[str]) -> str:
    login = f"p{secrets.token_hex(4)}"
    provider.set_person(login, f"{login}@example.org", f"Person {login}", groups)
    return login


def _through_the_provider(page, relay, login: str, then=None) -> None:
    """From the dashboard to the provider's login and consent pages and back; ``then`` runs on the login
    page, while the sign-in is under way at the provider."""
    page.goto(relay.url + "/dashboard/")
    page.click("#sign-in-oidc")
    page.wait_for_selector("input[name=login]")
    if then:
        then()
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password: the provider's development login takes any")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Authorize")  # the consent page
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(relay.url) + r"/(dashboard|sign-in)/"))


def _cookie_client(relay, page) -> httpx.Client:
    """A copy of the browser's cookies: what someone who stole them could send."""
    cookies = httpx.Cookies()
    for cookie in page.context.cookies():
        cookies.set(cookie["name"], cookie["value"], domain=cookie["domain"], path=cookie["path"])
    return httpx.Client(base_url=relay.url, cookies=cookies)


def test_an_operator_signs_in_through_the_provider_and_signing_out_ends_it(
    oidc_relay, provider, browser
):
    relay = oidc_relay
    login = _person(provider, ["relay-operators", "unrelated"])
    page = browser.new_context().new_page()
    _through_the_provider(page, relay, login)
    assert page.url == relay.url + "/dashboard/"
    expect(page.locator("[data-signed-in]")).to_have_text(f"{login}@example.org")
    expect(page.locator("nav")).to_contain_text("Tasks")
    (person,) = relay.ctx.people.list()
    assert (person.email, person.groups) == (
        f"{login}@example.org",
        ("relay-operators", "unrelated"),
    )
    assert relay.ctx.people.grants(person.person_id) == [
        Grant(Role.OPERATOR, EVERY_TENANT, RoleSource.GROUPS)
    ]
    before = _cookie_client(relay, page)
    assert before.get("/dashboard/").status_code == 200
    # signing in again (the provider knows the browser: straight back) replaces the browser's sign-in
    page.goto(relay.url + "/sign-in/oidc?next=/dashboard/tenants")
    page.wait_for_url(relay.url + "/dashboard/tenants")
    assert before.get("/dashboard/").status_code == 302, "the replaced sign-in ended"
    stolen = _cookie_client(relay, page)
    assert stolen.get("/dashboard/").status_code == 200
    assert stolen.get("/dashboard/rq/").status_code == 200

    page.click("header button:has-text('Sign out')")
    page.wait_for_url(re.compile(r"/dashboard/login"))
    assert stolen.get("/dashboard/").status_code == 302, "signed out: the old cookie is refused"
    assert stolen.get("/dashboard/api/tasks").status_code == 401
    assert not [k for k in relay.ctx.redis.scan_iter("*sign-in:*")], "the sign-in is gone"
    # the operators' audit log: two sign-ins and the sign-out, by the person, from the browser
    logged = list(relay.ctx.audit.every(None, AuditFilter(actor=person.person_id)))
    assert [(e.action, e.actor_kind, e.target_id) for e in logged] == [
        ("session.signed_out", "person", "openid-connect"),
        ("session.signed_in", "person", "openid-connect"),
        ("session.signed_in", "person", "openid-connect"),
    ]
    assert {e.actor_name for e in logged} == {f"{login}@example.org"} and all(
        e.source == "127.0.0.1" for e in logged
    )


def test_a_person_without_the_operator_role_is_refused_naming_their_role(
    oidc_relay, provider, browser
):
    relay = oidc_relay
    login = _person(provider, ["acme-admins"])
    page = browser.new_context().new_page()
    _through_the_provider(page, relay, login)
    expect(page.locator("[data-refused]")).to_contain_text("admin of acme")
    expect(page.locator("[data-refused]")).to_contain_text("operator")
    client = _cookie_client(relay, page)
    for path in ("/dashboard/", "/dashboard/tenants", "/dashboard/rq/"):
        assert client.get(path).status_code == 403, path
    refused = client.get("/dashboard/api/tasks")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


def test_a_role_given_applies_at_once_and_one_taken_ends_the_sign_in(oidc_relay, provider, browser):
    relay = oidc_relay
    login = _person(provider, [])
    page = browser.new_context().new_page()
    _through_the_provider(page, relay, login)
    expect(page.locator("[data-refused]")).to_contain_text("no role in Relay")
    email = f"{login}@example.org"
    in_tenant = relay_cli(relay, "people", "grant", email, "member", "--tenant", "acme")
    assert in_tenant.exit_code == 0 and "member of acme" in in_tenant.output, in_tenant.output
    page.reload()
    expect(page.locator("[data-refused]")).to_contain_text("member of acme")
    given = relay_cli(relay, "people", "grant", email, "operator")
    assert given.exit_code == 0 and "operator" in given.output, given.output
    page.reload()
    expect(page.locator("[data-signed-in]")).to_have_text(email)
    listed = relay_cli(relay, "people", "list").output
    assert email in listed and "operator of every tenant (relay)" in listed

    taken = relay_cli(relay, "people", "revoke", email, "--operator")
    assert taken.exit_code == 0 and "1 sign-in(s) ended" in taken.output, taken.output
    page.reload()
    assert "/dashboard/login" in page.url, "the sign-in ended with the role"
    again = relay_cli(relay, "people", "revoke", email, "--operator")
    assert again.exit_code != 0 and "no role given in Relay" in again.output


def test_changed_groups_change_the_roles_at_the_next_sign_in_and_end_the_old_ones(
    oidc_relay, provider, browser
):
    relay = oidc_relay
    login = _person(provider, ["relay-operators"])
    first = browser.new_context().new_page()
    _through_the_provider(first, relay, login)
    expect(first.locator("[data-signed-in]")).to_have_text(f"{login}@example.org")

    provider.set_person(login, f"{login}@example.org", f"Person {login}", ["acme-staff"])
    second = browser.new_context().new_page()
    _through_the_provider(second, relay, login)
    expect(second.locator("[data-refused]")).to_contain_text("viewer of acme")
    first.reload()
    assert "/dashboard/login" in first.url, "the sign-in made on the old groups ended"
    (person,) = relay.ctx.people.list()
    assert relay.ctx.people.grants(person.person_id) == [
        Grant(Role.VIEWER, relay.tenant_id, RoleSource.GROUPS)
    ]


def test_an_old_sign_in_goes_through_the_provider_again_and_reads_the_groups_anew(
    oidc_relay, provider, browser
):
    relay = oidc_relay
    login = _person(provider, ["relay-operators"])
    page = browser.new_context().new_page()
    _through_the_provider(page, relay, login)
    page.goto(relay.url + "/dashboard/tenants")
    expect(page.locator("[data-signed-in]")).to_have_text(f"{login}@example.org")
    provider.set_person(login, f"{login}@example.org", f"Person {login}", ["acme-staff"])
    page.reload()
    expect(page.locator("[data-signed-in]")).to_be_visible()  # not due yet: the old groups hold
    (key,) = relay.ctx.redis.scan_iter("*sign-in:*")
    # the sign-in made longer ago than RELAY_OIDC_RECHECK_SECONDS (its clock, not the test's, moves)
    relay.ctx.redis.hset(key, "created_at", time.time() - relay.config.oidc_recheck_seconds - 1)
    stolen = _cookie_client(relay, page)
    page.reload()  # to the provider, which knows the person still: straight back, no page of its own
    expect(page.locator("[data-refused]")).to_contain_text("viewer of acme")
    assert page.url == relay.url + "/dashboard/tenants"
    assert stolen.get("/dashboard/tenants").status_code == 302, "the old sign-in ended"


def test_discovery_must_answer_and_name_the_configured_issuer(oidc_relay, provider):
    unreachable = replace(oidc_relay.config, oidc_issuer="http://127.0.0.1:9")
    with pytest.raises(SignInRefused, match=r"discovery document .* could not be read"):
        IdentityProvider(unreachable).load_server_metadata()
    # the same server by another name: its discovery document names 127.0.0.1
    renamed = replace(
        oidc_relay.config, oidc_issuer=provider.issuer.replace("127.0.0.1", "localhost")
    )
    with pytest.raises(SignInRefused, match="names another issuer"):
        IdentityProvider(renamed).load_server_metadata()
    assert IdentityProvider(oidc_relay.config).load_server_metadata()["issuer"] == provider.issuer


def _change_pending(relay, page, change) -> None:
    """What the browser's signed session cookie holds of its sign-ins under way, changed by ``change``
    (the test signs it with the relay's key, as no one else can)."""
    app = relay.web.app
    serializer = app.session_interface.get_signing_serializer(app)
    name = app.config["SESSION_COOKIE_NAME"]
    (cookie,) = [c for c in page.context.cookies() if c["name"] == name]
    data = serializer.loads(cookie["value"])
    change(data.setdefault(PENDING_KEY, {}))
    page.context.add_cookies(
        [{"name": name, "value": serializer.dumps(data), "domain": "127.0.0.1", "path": "/"}]
    )


def _each(field: str, value):
    return lambda pending: [p.update({field: value}) for p in pending.values()]


def test_a_forged_state_a_replayed_code_a_wrong_nonce_and_verifier_are_refused(
    oidc_relay, provider, browser
):
    relay = oidc_relay
    login = _person(provider, ["relay-operators"])
    forged = httpx.get(relay.url + "/sign-in/oidc/callback?code=abc&state=made-up")
    assert forged.status_code == 400 and "not begun in this browser" in forged.text

    # a state begun in another browser (a link an attacker sends, to sign the victim in as the attacker)
    attacker = httpx.Client(base_url=relay.url)
    state = parse_qs(urlsplit(attacker.get("/sign-in/oidc").headers["location"]).query)["state"][0]
    victim = httpx.Client(base_url=relay.url)
    assert victim.get(f"/sign-in/oidc/callback?code=abc&state={state}").status_code == 400
    assert not list(relay.ctx.redis.scan_iter("*sign-in*")), "an anonymous visitor writes nothing"

    # a code used once, sent again with its state and verifier (as if the state had not been spent)
    page = browser.new_context().new_page()
    callbacks: list[str] = []
    page.on("request", lambda r: "/sign-in/oidc/callback" in r.url and callbacks.append(r.url))
    held: dict[str, dict] = {}
    _through_the_provider(
        page, relay, login, then=lambda: _change_pending(relay, page, held.update)
    )
    assert page.url == relay.url + "/dashboard/"
    assert page.goto(callbacks[0]).status == 400, "the state is spent"
    _change_pending(relay, page, lambda pending: pending.update(held))
    replayed = page.goto(callbacks[0])
    assert replayed.status == 401 and "refused the code: invalid_grant" in page.content()

    # the ID token's nonce is not the one this sign-in sent
    page = browser.new_context().new_page()
    _through_the_provider(
        page, relay, login, then=lambda: _change_pending(relay, page, _each("nonce", "other"))
    )
    expect(page.locator("[role=alert]")).to_contain_text("The ID token is not valid")
    assert "nonce" in page.locator("[role=alert]").inner_text()

    # PKCE: a verifier that is not the one the challenge was made from
    page = browser.new_context().new_page()
    _through_the_provider(
        page,
        relay,
        login,
        then=lambda: _change_pending(relay, page, _each("code_verifier", "x" * 50)),
    )
    expect(page.locator("[role=alert]")).to_contain_text("refused the code: invalid_grant")

    # more than ten minutes at the provider's pages (the start moved back, not the clock forward)
    page = browser.new_context().new_page()
    _through_the_provider(
        page,
        relay,
        login,
        then=lambda: _change_pending(relay, page, _each("begun_at", time.time() - 601)),
    )
    expect(page.locator("[role=alert]")).to_contain_text("took too long")
    signed = list(relay.ctx.redis.scan_iter("*sign-in:*"))
    assert len(signed) == 1, "the first sign-in only: none of the refused ones signed in"


def test_break_glass_still_signs_in_as_an_operator_beside_the_provider(oidc_relay):
    client, status = sign_in(oidc_relay)
    assert status == 302
    page = client.get("/dashboard/")
    assert page.status_code == 200 and "break-glass (admin token)" in page.text
    login_page = httpx.get(oidc_relay.url + "/dashboard/login").text
    assert 'id="sign-in-oidc"' in login_page and 'id="token"' in login_page
    printed = relay_cli(oidc_relay, "people", "provider").output
    assert f"redirect URI  {oidc_relay.url}/sign-in/oidc/callback" in printed
    assert "group 'acme-admins' -> admin of acme" in printed
    checked = relay_cli(oidc_relay, "doctor").output
    assert (
        f"sign-in              {oidc_relay.config.oidc_issuer} answers; 3 group mapping(s)"
        in checked
    )


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ({"oidc_roles": "ops=root"}, "RELAY_OIDC_ROLES: 'ops=root' names no role"),
        ({"oidc_client_secret": ""}, "set RELAY_OIDC_CLIENT_ID and RELAY_OIDC_CLIENT_SECRET"),
    ],
)
def test_no_web_process_starts_with_a_mistaken_provider_setting(oidc_relay, setting, said):
    with pytest.raises(ValueError, match=re.escape(said)):
        create_app(replace(oidc_relay.config, **setting))


def test_the_group_mapping_reads_dns_and_refuses_what_is_not_a_role():
    mapping = RoleMapping.parse(
        "relay-operators=operator;\ncn=ops,dc=example,dc=org = acme:member; acme = acme:viewer"
    )
    assert mapping.grants(("cn=ops,dc=example,dc=org", "other")) == [
        Grant(Role.MEMBER, "acme", RoleSource.GROUPS)
    ]
    assert mapping.grants(("relay-operators",)) == [
        Grant(Role.OPERATOR, EVERY_TENANT, RoleSource.GROUPS)
    ]
    for wrong, said in [
        ("ops=root", "names no role"),
        ("ops=acme:operator", "operator holds across tenants"),
        ("ops=admin", "operator holds across tenants"),
        ("just-a-group", "is not GROUP=ROLE"),
    ]:
        with pytest.raises(ValueError, match=said):
            RoleMapping.parse(wrong)


def test_an_id_token_is_refused_for_its_signature_issuer_audience_expiry_and_nonce():
    """What a browser cannot make: ID tokens each wrong in one way, validated as the callback does."""
    key, other_key = (
        RSAKey.generate_key(2048, {"kid": "k1"}),
        RSAKey.generate_key(2048, {"kid": "k1"}),
    )
    config = RelayConfig(
        oidc_issuer="https://idp.example", oidc_client_id="relay", oidc_client_secret="s" * 32
    )
    idp = IdentityProvider(config)
    idp.server_metadata = {
        "issuer": "https://idp.example",
        "jwks": KeySet([key]).as_dict(private=False),
        "id_token_signing_alg_values_supported": ["RS256"],
        "_loaded_at": time.time(),
    }
    now = int(time.time())
    good = {
        "iss": "https://idp.example",
        "sub": "ada",
        "aud": "relay",
        "iat": now,
        "exp": now + 300,
    }

    def token(claims: dict, signed_with=key) -> dict:
        header = {"alg": "RS256", "kid": "k1"}
        return {
            "id_token": jwt.encode(
                header, {**claims, "nonce": claims.get("nonce", "n1")}, signed_with
            )
        }

    assert idp.validated(token(good), "n1")["sub"] == "ada"
    for wrong, said in [
        (token(good, signed_with=other_key), "signature"),
        (token({**good, "iss": "https://evil.example"}), "iss"),
        (token({**good, "aud": "another-client"}), "aud"),
        (token({**good, "aud": "another-client", "azp": "relay"}), "aud"),
        (token({**good, "exp": now - 3600, "iat": now - 7200}), "expired"),
        (token({**good, "nonce": "n2"}), "nonce"),
        ({"access_token": "no id token"}, "no ID token"),
    ]:
        with pytest.raises(SignInRefused, match=said):
            idp.validated(wrong, "n1")
