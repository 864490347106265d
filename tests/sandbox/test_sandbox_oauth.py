"""OAuth through intuit-oauth's real AuthClient: consent, codes, rotation, revocation, expiry."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError
from quickbooks.exceptions import AuthorizationException
from quickbooks.objects.customer import Customer

from qbo_sandbox.oauth import InvalidGrant, TokenAuthority, TokenTTLs


def _consent(clients, state: str = "csrf-123") -> tuple[object, dict[str, str]]:
    auth = clients.auth()
    url = auth.get_authorization_url([Scopes.ACCOUNTING], state_token=state)
    response = clients.session().get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == auth.redirect_uri
    return auth, {k: v[0] for k, v in parse_qs(location.query).items()}


def _error_of(exc: AuthClientError) -> str:
    return exc.response.json()["error"]


@pytest.mark.parametrize("path", ["/.well-known/openid_sandbox_configuration",
                                  "/.well-known/openid_configuration/"])
def test_discovery_document_points_at_the_sandbox(sandbox, raw, path):
    document = raw.session.get(sandbox.base_url + path, timeout=5).json()
    for key in ("authorization_endpoint", "token_endpoint", "revocation_endpoint", "userinfo_endpoint", "jwks_uri"):
        assert document[key].startswith(sandbox.base_url + "/"), key
    assert document["token_endpoint"].endswith("/oauth2/v1/tokens/bearer")


def test_authorize_redirects_with_code_state_and_realm_and_code_buys_tokens(sandbox, clients):
    auth, params = _consent(clients, state="state-xyz")
    assert params["state"] == "state-xyz"
    assert params["realmId"] == sandbox.realm_id
    auth.get_bearer_token(params["code"], realm_id=params["realmId"])
    assert auth.access_token and auth.refresh_token
    assert auth.expires_in == sandbox.config.access_token_ttl
    assert Customer.all(qb=clients.qb(auth)) == []


@pytest.mark.parametrize("override, reason", [
    ({"client_id": "someone-else"}, "Unknown client_id"),
    ({"redirect_uri": "http://localhost:9999/evil"}, "redirect_uri"),
    ({"response_type": "token"}, "response_type"),
])
def test_authorize_rejects_bad_requests_with_a_400_page(sandbox, raw, override, reason):
    params = {"client_id": sandbox.config.client_id, "response_type": "code",
              "scope": Scopes.ACCOUNTING.value, "redirect_uri": "http://localhost:8765/callback", "state": "s"}
    params.update(override)
    response = raw.session.get(sandbox.base_url + "/connect/oauth2", params=params, allow_redirects=False, timeout=5)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/html")
    assert reason in response.text


@pytest.mark.parametrize("uri, allowed", [("http://127.0.0.1:5000/cb", True), ("http://localhost/x", True),
                                          ("https://example.com/cb", False)])
def test_without_registered_redirects_any_loopback_uri_is_allowed(make_sandbox, uri, allowed):
    sandbox = make_sandbox(redirect_uris=())
    params = {"client_id": sandbox.config.client_id, "response_type": "code", "redirect_uri": uri, "state": "s"}
    response = requests.get(sandbox.base_url + "/connect/oauth2", params=params, allow_redirects=False, timeout=5)
    assert response.status_code == (302 if allowed else 400)


def test_reusing_an_auth_code_fails_and_revokes_what_the_first_use_issued(sandbox, clients, raw):
    auth, params = _consent(clients)
    auth.get_bearer_token(params["code"])
    first_access, first_refresh = auth.access_token, auth.refresh_token
    assert raw.get("preferences", token=first_access).status_code == 200
    with pytest.raises(AuthClientError) as second:
        auth.get_bearer_token(params["code"])
    assert second.value.status_code == 400 and _error_of(second.value) == "invalid_grant"
    assert raw.get("preferences", token=first_access).status_code == 401
    with pytest.raises(AuthClientError) as refresh:
        auth.refresh(refresh_token=first_refresh)
    assert _error_of(refresh.value) == "invalid_grant"


def test_auth_code_needs_the_same_redirect_uri(sandbox, clients):
    _, params = _consent(clients)
    other = clients.auth(redirect_uri="http://localhost:8765/other")
    with pytest.raises(AuthClientError) as exc:
        other.get_bearer_token(params["code"])
    assert _error_of(exc.value) == "invalid_grant"


def test_every_refresh_rotates_and_older_refresh_tokens_die(sandbox, clients, raw):
    tokens = sandbox.issue_tokens()
    auth = clients.auth(tokens)
    rt0, at0 = auth.refresh_token, auth.access_token
    auth.refresh()
    rt1, at1 = auth.refresh_token, auth.access_token
    auth.refresh()
    rt2 = auth.refresh_token
    assert len({rt0, rt1, rt2}) == 3 and at1 != at0
    # A new access token invalidates nothing else.
    assert raw.get("preferences", token=at0).status_code == 200
    with pytest.raises(AuthClientError) as exc:
        auth.refresh(refresh_token=rt0)
    assert exc.value.status_code == 400 and _error_of(exc.value) == "invalid_grant"
    assert sandbox.stats()["token_refreshes"] == 2


def test_retrying_the_previous_refresh_token_returns_the_current_pair(sandbox, clients):
    auth = clients.auth(sandbox.issue_tokens())
    rt0 = auth.refresh_token
    auth.refresh()
    current = (auth.access_token, auth.refresh_token)
    auth.refresh(refresh_token=rt0)  # the response to the first refresh was "lost"
    assert (auth.access_token, auth.refresh_token) == current
    auth.refresh()  # the current token is used: rt0 is now two generations old
    with pytest.raises(AuthClientError):
        auth.refresh(refresh_token=rt0)


def test_wrong_client_secret_is_invalid_client(sandbox, clients):
    auth = clients.auth(sandbox.issue_tokens(), client_secret="not-the-secret")
    with pytest.raises(AuthClientError) as exc:
        auth.refresh()
    assert exc.value.status_code == 401 and _error_of(exc.value) == "invalid_client"


def test_revoke_kills_the_whole_grant(sandbox, clients):
    qb = clients.qb()
    auth = qb.auth_client
    assert auth.revoke(token=auth.refresh_token) is True
    with pytest.raises(AuthorizationException) as exc:
        Customer.all(qb=qb)
    assert exc.value.error_code == 401
    with pytest.raises(AuthClientError) as refresh:
        auth.refresh()
    assert _error_of(refresh.value) == "invalid_grant"


def test_hard_expiry_is_reported_only_when_asked_for(make_sandbox, make_clients):
    sandbox = make_sandbox(refresh_token_hard_ttl=1000, refresh_token_ttl=5000)
    auth = make_clients(sandbox).auth(sandbox.issue_tokens())
    auth.refresh()
    assert not hasattr(auth, "x_refresh_token_hard_expires_in")
    # The rolling expiry never outlives the 5-year (here 1000 s) hard cap.
    assert 990 <= auth.x_refresh_token_expires_in <= 1000
    # intuit-oauth 1.2.7 sends this header when include_refresh_token_hard_expires_in is set;
    # with 1.2.6 the session header does the same.
    auth.headers["x-include-refresh-token-hard-expires-in"] = "true"
    auth.refresh()
    assert 990 <= auth.x_refresh_token_hard_expires_in <= 1000


def test_expired_access_token_gives_lower_case_401_until_refreshed(sandbox, clients):
    qb = clients.qb()
    sandbox.expire_access_tokens()
    with pytest.raises(AuthorizationException) as exc:
        Customer.all(qb=qb)
    assert exc.value.error_code == 401
    body = json.loads(exc.value.detail)
    assert body["fault"]["error"][0]["code"] == "3200" and body["fault"]["type"] == "AUTHENTICATION"
    assert "Fault" not in body
    qb.auth_client.refresh()
    assert Customer.all(qb=qb) == []
    assert sandbox.stats()["auth_failures"] == 1


def test_revoke_all_kills_refresh_tokens_too(sandbox, clients):
    auth = clients.auth(sandbox.issue_tokens())
    sandbox.revoke_all()
    with pytest.raises(AuthClientError) as exc:
        auth.refresh()
    assert _error_of(exc.value) == "invalid_grant"


@pytest.mark.parametrize("realm", ["9130350000000999", "not-a-realm"])
def test_a_token_used_on_another_company_is_403_code_120(sandbox, raw, realm):
    url = f"{sandbox.api_base}/company/{realm}/preferences"
    response = raw.session.get(url, headers={"Authorization": f"Bearer {raw.token}"}, timeout=5)
    assert response.status_code == 403
    error = response.json()["Fault"]["Error"][0]
    assert error["code"] == "120" and response.json()["Fault"]["type"] == "AuthorizationFault"


@pytest.mark.parametrize("header", [None, "Bearer ", "Bearer unknown-token", "Basic abc"])
def test_missing_or_unknown_tokens_are_401(raw, header):
    headers = {} if header is None else {"Authorization": header}
    response = raw.session.get(raw.url("preferences"), headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json()["fault"]["error"][0]["message"].startswith("message=AuthenticationFailed")


class Clock:
    """A hand-moved clock for token lifetimes."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def authority() -> tuple[TokenAuthority, Clock]:
    clock = Clock()
    return TokenAuthority("1", TokenTTLs(access=3600, refresh=100 * 86400, hard=200 * 86400), clock), clock


def test_access_tokens_expire_after_their_ttl(authority):
    tokens, clock = authority
    issued = tokens.issue()
    assert tokens.check_access(issued["access_token"]).valid
    clock.now += 3600
    assert not tokens.check_access(issued["access_token"]).valid


def test_refresh_token_validity_rolls_but_the_hard_cap_does_not(authority):
    tokens, clock = authority
    refresh = tokens.issue()["refresh_token"]
    for _ in range(3):  # 3 x 90 days > the 200-day hard cap
        clock.now += 90 * 86400
        try:
            refresh = tokens.refresh(refresh)["refresh_token"]
        except InvalidGrant:
            break
    else:
        pytest.fail("refresh kept working past the hard expiry")
    assert clock.now - 1_000_000.0 > 200 * 86400 - 90 * 86400


def test_an_unused_refresh_token_expires(authority):
    tokens, clock = authority
    refresh = tokens.issue()["refresh_token"]
    clock.now += 100 * 86400 + 1
    with pytest.raises(InvalidGrant):
        tokens.refresh(refresh)
