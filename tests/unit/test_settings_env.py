"""Settings read Nomad's and Consul's standard variables, as their CLIs do; SKIFF_* wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff_core.config import Settings
from skiff_core.discovery.consul import consul_client
from skiff_core.nomad.client import NomadClient, NomadNotFound, NomadUnreachable
from skiff_core.orchestrator.nomad import NomadOrchestrator
from tests.support.doubles.nomad import NomadDouble
from tests.support.doubles.tls import self_signed_cert

STANDARD = {
    "nomad_addr": "NOMAD_ADDR",
    "nomad_token": "NOMAD_TOKEN",
    "nomad_namespace": "NOMAD_NAMESPACE",
    "nomad_region": "NOMAD_REGION",
    "nomad_cacert": "NOMAD_CACERT",
    "nomad_tls_server_name": "NOMAD_TLS_SERVER_NAME",
    "consul_addr": "CONSUL_HTTP_ADDR",
    "consul_token": "CONSUL_HTTP_TOKEN",
    "consul_cacert": "CONSUL_CACERT",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [*STANDARD.values(), "NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY"]:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"SKIFF_{name}", raising=False)
    for field in STANDARD:
        monkeypatch.delenv(f"SKIFF_{field.upper()}", raising=False)
    monkeypatch.chdir(tmp_path)  # no skiff.toml


@pytest.mark.parametrize(("field", "variable"), sorted(STANDARD.items()))
def test_each_standard_variable_is_read_and_skiffs_own_wins(
    monkeypatch: pytest.MonkeyPatch, field: str, variable: str
) -> None:
    monkeypatch.setenv(variable, "standard")
    assert getattr(Settings(), field) == "standard"
    monkeypatch.setenv(f"SKIFF_{field.upper()}", "skiff")
    assert getattr(Settings(), field) == "skiff"
    assert getattr(Settings(**{field: "flag"}), field) == "flag"


def test_a_client_certificate_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOMAD_CLIENT_CERT", "/c.pem")
    with pytest.raises(ValueError, match="NOMAD_CLIENT_KEY"):
        Settings()
    monkeypatch.setenv("NOMAD_CLIENT_KEY", "/k.pem")
    assert (Settings().nomad_client_cert, Settings().nomad_client_key) == ("/c.pem", "/k.pem")


async def test_the_consul_client_uses_the_settings_token_not_py_consuls_env_pick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # py-consul prefers CONSUL_HTTP_TOKEN to the token it is given; SKIFF_CONSUL_TOKEN must win.
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "standard")
    monkeypatch.setenv("SKIFF_CONSUL_TOKEN", "skiff")
    settings = Settings()
    client = consul_client(settings.consul_addr, settings.consul_token, None)
    assert client.token == "skiff"
    await client.http.close()


async def test_nomad_client_certificates_are_presented(tmp_path: Path) -> None:
    """NOMAD_CLIENT_CERT/KEY, for a Nomad that verifies https clients, on both of the client's
    transports (python-nomad's requests and httpx)."""
    cert, key = self_signed_cert(tmp_path)
    with NomadDouble(tls=(cert, key), verify_https_client=True) as nomad:
        without = NomadClient(nomad.address, retries=0, ca_cert=str(cert))
        with pytest.raises(NomadUnreachable):
            await without.get_job("skiff-echo")
        await without.close()
        settings = Settings(
            nomad_addr=nomad.address, nomad_cacert=str(cert), nomad_client_cert=str(cert), nomad_client_key=str(key)
        )
        orch = NomadOrchestrator(settings, worker_key=lambda n: "k")
        assert await orch.client.get_job("skiff-echo") is None  # python-nomad
        assert await orch.client.allocations("skiff-echo") == []
        with pytest.raises(NomadNotFound):
            await orch.client.scale_status("skiff-echo")  # httpx
        await orch.close()


async def test_nomad_tls_server_name_is_the_name_checked(tmp_path: Path) -> None:
    """NOMAD_TLS_SERVER_NAME: Nomad's certificates name server.<region>.nomad, not the address
    a client dials; both transports must check that name (and only with it set do they connect)."""
    cert, key = self_signed_cert(tmp_path, dns_name="server.global.nomad")
    with NomadDouble(tls=(cert, key)) as nomad:
        plain = NomadClient(nomad.address, retries=0, ca_cert=str(cert))
        with pytest.raises(NomadUnreachable):
            await plain.get_job("skiff-echo")
        with pytest.raises(NomadUnreachable):
            await plain.scale_status("skiff-echo")
        await plain.close()
        wrong = NomadClient(nomad.address, retries=0, ca_cert=str(cert), tls_server_name="server.other.nomad")
        with pytest.raises(NomadUnreachable):
            await wrong.get_job("skiff-echo")
        await wrong.close()
        settings = Settings(
            nomad_addr=nomad.address, nomad_cacert=str(cert), nomad_tls_server_name="server.global.nomad"
        )
        named = NomadOrchestrator(settings, worker_key=lambda n: "k")
        assert await named.client.get_job("skiff-echo") is None  # python-nomad (requests)
        with pytest.raises(NomadNotFound):
            await named.client.scale_status("skiff-echo")  # httpx
        await named.close()
