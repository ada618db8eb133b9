"""Setting sign-in up: what `kb ui` / `kb serve` refuse (half a configuration, open mode beyond loopback), the
private `[auth]` secrets file for Streamlit, and secrets never shown."""

from __future__ import annotations

import stat

import pytest
import tomllib
from typer.testing import CliRunner

from app.cli import app
from app.settings import Settings, get_settings

runner = CliRunner()
SECRET = "client-secret-that-must-not-show"


@pytest.fixture
def env(isolated_settings, monkeypatch):
    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    return set_env


@pytest.mark.parametrize("command", ["ui", "serve"])
def test_open_mode_beyond_loopback_is_refused_naming_the_fix(env, command):
    env()
    result = runner.invoke(app, [command, "--host", "0.0.0.0", "--port", "8599"])
    assert result.exit_code == 2
    assert "KB_AUTH_PROVIDER_URL" in result.output and "--allow-open" in result.output


@pytest.mark.parametrize("command, missing", [
    ("ui", ["KB_AUTH_CLIENT_ID", "KB_AUTH_CLIENT_SECRET", "KB_AUTH_COOKIE_SECRET"]),
    ("serve", ["KB_AUTH_CLIENT_ID"]),
])
def test_half_configured_sign_in_is_refused_naming_what_is_missing(env, command, missing):
    env(KB_AUTH_PROVIDER_URL="https://login.example.com/realms/corp")
    result = runner.invoke(app, [command, "--port", "8599"])
    assert result.exit_code == 2 and "half configured" in result.output
    assert all(name in result.output for name in missing)
    assert "KB_AUTH_PROVIDER_URL is" not in result.output


def test_auth_settings_from_the_environment_and_secrets_stay_hidden(env):
    from app.ui.components.status_info import settings_rows

    env(KB_AUTH_PROVIDER_URL="https://idp.example.com", KB_AUTH_CLIENT_ID="kb", KB_AUTH_CLIENT_SECRET=SECRET,
        KB_AUTH_COOKIE_SECRET=SECRET, KB_AUTH_GROUPS_CLAIM="roles", KB_AUTH_ADMIN_GROUP="kb-admins")
    s = get_settings()
    assert (s.auth.provider_url, s.auth.client_id, s.auth.groups_claim, s.auth.admin_group) == (
        "https://idp.example.com", "kb", "roles", "kb-admins")
    assert s.auth.client_secret.get_secret_value() == SECRET and s.auth.missing(for_app=True) == []
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())
    assert SECRET not in str(settings_rows(s))


def test_the_auth_section_of_kb_toml(tmp_path, monkeypatch):
    config = tmp_path / "kb.toml"
    config.write_text('[auth]\nprovider_url = "https://idp.example.com"\nclient_id = "kb"\n', encoding="utf-8")
    monkeypatch.setenv("KB_CONFIG", str(config))
    monkeypatch.setenv("KB_AUTH_CLIENT_ID", "from-env")  # the environment wins, key by key
    s = Settings()
    assert s.auth.provider_url == "https://idp.example.com" and s.auth.client_id == "from-env"


def test_streamlit_secrets_file_is_private_and_complete(tmp_path):
    from app.cli.ui import write_auth_secrets

    s = Settings(auth={"provider_url": "https://idp.example.com/", "client_id": "kb", "client_secret": SECRET,
                       "cookie_secret": "c00kie"}, _env_file=None)
    path = write_auth_secrets(s.auth, "0.0.0.0", 8501, folder=tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    auth = tomllib.loads(path.read_text(encoding="utf-8"))["auth"]
    assert auth == {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c00kie",
                    "client_id": "kb", "client_secret": SECRET,
                    "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration",
                    "expose_tokens": ["access"]}  # for the app's re-check of groups at userinfo
    s2 = s.model_copy(update={"auth": s.auth.model_copy(update={"redirect_uri": "https://kb.example.com/oauth2callback"})})
    again = tomllib.loads(write_auth_secrets(s2.auth, "0.0.0.0", 8501, folder=tmp_path).read_text())["auth"]
    assert again["redirect_uri"] == "https://kb.example.com/oauth2callback"
