"""Providers as configuration: ARGUS_SSO_* variables and secret files, the Google and Microsoft
presets, and the settings that are refused at start-up (one line naming the variable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from argus_auth.sso_providers import SsoConfig
from argus_shared.settings import ConfigError


def test_presets_and_a_generic_provider_from_settings_and_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "google-secret"
    secret.write_text("g-secret\n")
    config = SsoConfig.from_env({
        "ARGUS_SSO_PROVIDERS": "google, microsoft,contoso,acme",
        "ARGUS_SSO_GOOGLE_CLIENT_ID": "g-id", "ARGUS_SSO_GOOGLE_CLIENT_SECRET_FILE": str(secret),
        "ARGUS_SSO_MICROSOFT_CLIENT_ID": "m-id", "ARGUS_SSO_MICROSOFT_CLIENT_SECRET": "m",
        "ARGUS_SSO_CONTOSO_PRESET": "microsoft", "ARGUS_SSO_CONTOSO_CLIENT_ID": "c-id",
        "ARGUS_SSO_CONTOSO_CLIENT_SECRET": "c",
        "ARGUS_SSO_CONTOSO_TENANT": "0b5e2f7a-1111-2222-3333-444455556666",
        "ARGUS_SSO_ACME_ISSUER": "https://idp.acme.example/", "ARGUS_SSO_ACME_CLIENT_ID": "a",
        "ARGUS_SSO_ACME_CLIENT_SECRET": "a", "ARGUS_SSO_ACME_SCOPES": "openid email",
        "ARGUS_SSO_ACME_ALLOWED_DOMAINS": "Acme.example, acme.test",
    }, public_url="https://app.example")
    google, microsoft = config.providers["google"], config.providers["microsoft"]
    contoso, acme = config.providers["contoso"], config.providers["acme"]
    assert google.issuer == "https://accounts.google.com" and google.client_secret == "g-secret"
    assert google.expected_issuers(google.issuer, None) == (
        "https://accounts.google.com", "accounts.google.com")
    assert "g-secret" not in repr(google)
    # Entra multi-tenant: the document's issuer is the {tenantid} template, iss must carry tid
    assert microsoft.issuer == "https://login.microsoftonline.com/organizations/v2.0"
    assert microsoft.multi_tenant and microsoft.document_issuer_ok(
        "https://login.microsoftonline.com/{tenantid}/v2.0")
    assert not microsoft.document_issuer_ok("https://evil.example/{tenantid}/v2.0")
    assert microsoft.expected_issuers("https://login.microsoftonline.com/{tenantid}/v2.0",
                                      "t1") == ("https://login.microsoftonline.com/t1/v2.0",)
    assert microsoft.expected_issuers("https://login.microsoftonline.com/{tenantid}/v2.0",
                                      "../x") == ()
    # a single tenant: one fixed issuer
    assert not contoso.multi_tenant and contoso.issuer.endswith(
        "/0b5e2f7a-1111-2222-3333-444455556666/v2.0")
    assert acme.issuer == "https://idp.acme.example" and acme.scopes == ("openid", "email")
    assert acme.allowed_domains == ("acme.example", "acme.test")
    assert acme.email_allowed("ada@acme.test") and not acme.email_allowed("ada@evil.example")
    assert config.redirect_uri("acme") == "https://app.example/auth/sso/acme/callback"


@pytest.mark.parametrize(("env", "names"), [
    ({"ARGUS_SSO_PROVIDERS": "Bad Name"}, "ARGUS_SSO_PROVIDERS"),
    ({"ARGUS_SSO_PROVIDERS": "acme", "ARGUS_SSO_ACME_CLIENT_ID": "a",
      "ARGUS_SSO_ACME_CLIENT_SECRET": "s"}, "ARGUS_SSO_ACME_ISSUER"),
    ({"ARGUS_SSO_PROVIDERS": "acme", "ARGUS_SSO_ACME_ISSUER": "http://idp.example",
      "ARGUS_SSO_ACME_CLIENT_ID": "a", "ARGUS_SSO_ACME_CLIENT_SECRET": "s"},
     "ARGUS_SSO_ACME_ISSUER"),
    ({"ARGUS_SSO_PROVIDERS": "google", "ARGUS_SSO_GOOGLE_CLIENT_ID": "a"},
     "ARGUS_SSO_GOOGLE_CLIENT_SECRET"),
    ({"ARGUS_SSO_PROVIDERS": "google", "ARGUS_SSO_GOOGLE_CLIENT_ID": "a",
      "ARGUS_SSO_GOOGLE_CLIENT_SECRET": "s", "ARGUS_SSO_GOOGLE_SCOPES": "email"},
     "ARGUS_SSO_GOOGLE_SCOPES"),
    ({"ARGUS_SSO_PROVIDERS": "acme", "ARGUS_SSO_ACME_PRESET": "saml"}, "ARGUS_SSO_ACME_PRESET"),
], ids=["name", "no_issuer", "plain_http_off_loopback", "no_secret", "no_openid_scope",
        "unknown_preset"])
def test_bad_provider_settings_stop_start_up_naming_the_setting(env: dict[str, str],
                                                                 names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        SsoConfig.from_env(env)
