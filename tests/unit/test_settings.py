import re
from pathlib import Path

import pytest

from tidewater.settings import Settings, SettingsError

KEY = "0x" + "11" * 32


def test_defaults_derive_from_data_dir() -> None:
    s = Settings.from_env({"TIDEWATER_DATA_DIR": "/srv/tw"})
    assert s.data_dir == Path("/srv/tw")
    assert s.address_file == Path("/srv/tw/address.json")
    assert s.db_url == "sqlite:////srv/tw/tidewater.db"
    assert s.allow_non_public_ip is False
    assert s.provider_private_key is None


def test_key_is_normalized_and_hidden_from_repr() -> None:
    s = Settings.from_env({"PROVIDER_PRIVATE_KEY": "11" * 32})
    assert s.provider_private_key == KEY
    assert KEY[2:] not in repr(s)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"PROVIDER_PRIVATE_KEY": "0x1234"}, "PROVIDER_PRIVATE_KEY"),
        ({"ALLOW_NON_PUBLIC_IP": "maybe"}, "ALLOW_NON_PUBLIC_IP"),
        ({"NETWORK_URL": "localhost:8545"}, "NETWORK_URL"),
        ({"TIDEWATER_WORKERS": "two"}, "TIDEWATER_WORKERS"),
        ({"TIDEWATER_LOG_LEVEL": "LOUD"}, "TIDEWATER_LOG_LEVEL"),
        ({"TIDEWATER_DISK_QUOTA": "xfs"}, "TIDEWATER_DISK_QUOTA"),
        ({"AUTHORIZED_DECRYPTERS": "0x12, aquarius"}, "AUTHORIZED_DECRYPTERS"),
        ({"TIDEWATER_PULL_IMAGES": "sometimes"}, "TIDEWATER_PULL_IMAGES"),
        ({"TIDEWATER_LEASE_SECONDS": "soon"}, "TIDEWATER_LEASE_SECONDS"),
        ({"TIDEWATER_POLL_SECONDS": "0"}, "TIDEWATER_POLL_SECONDS"),
        ({"TIDEWATER_SWEEP_SECONDS": "-1"}, "TIDEWATER_SWEEP_SECONDS"),
        ({"TIDEWATER_FETCH_TIMEOUT": "inf"}, "TIDEWATER_FETCH_TIMEOUT"),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        Settings.from_env(env)


def test_missing_key_says_how_to_fix() -> None:
    with pytest.raises(SettingsError, match="PROVIDER_PRIVATE_KEY is not set"):
        Settings.from_env({}).require_private_key()


def test_authorized_decrypters_are_a_lowercased_address_list() -> None:
    a, b = "0x" + "Ab" * 20, "0x" + "cD" * 20
    assert Settings.from_env({}).authorized_decrypters == ()
    parsed = Settings.from_env({"AUTHORIZED_DECRYPTERS": f" {a},{b} ,"}).authorized_decrypters
    assert parsed == (a.lower(), b.lower())


def test_engine_tunables_are_settings() -> None:
    s = Settings.from_env(
        {
            "TIDEWATER_LEASE_SECONDS": "12",
            "TIDEWATER_POLL_SECONDS": "0.25",
            "TIDEWATER_SWEEP_SECONDS": "60",
            "TIDEWATER_FETCH_TIMEOUT": "5.5",
        }
    )
    assert (s.lease_seconds, s.poll_seconds, s.sweep_seconds, s.fetch_timeout) == (
        12.0,
        0.25,
        60.0,
        5.5,
    )
    d = Settings.from_env({})
    assert (d.lease_seconds, d.poll_seconds, d.sweep_seconds, d.fetch_timeout) == (
        Settings().lease_seconds,
        Settings().poll_seconds,
        Settings().sweep_seconds,
        Settings().fetch_timeout,
    )


def test_pulling_missing_images_is_on_unless_turned_off() -> None:
    assert Settings.from_env({}).pull_images is True
    assert Settings.from_env({"TIDEWATER_PULL_IMAGES": "false"}).pull_images is False


# -- several chains ----------------------------------------------------------------------------

KEY2 = "0x" + "22" * 32
TWO_URLS = '{"8996": "http://127.0.0.1:8545", "58008": "http://127.0.0.1:8546"}'


def test_plain_network_url_is_one_chain_whose_id_the_node_tells() -> None:
    s = Settings.from_env({"NETWORK_URL": "http://127.0.0.1:8545", "PROVIDER_PRIVATE_KEY": KEY})
    assert s.rpc_urls() == {0: "http://127.0.0.1:8545"}
    assert s.network_url == "http://127.0.0.1:8545"
    assert s.private_key_for(8996) == s.private_key_for(58008) == KEY


def test_network_url_as_a_json_object_maps_chain_ids() -> None:
    s = Settings.from_env({"NETWORK_URL": TWO_URLS, "PROVIDER_PRIVATE_KEY": KEY})
    assert s.rpc_urls() == {8996: "http://127.0.0.1:8545", 58008: "http://127.0.0.1:8546"}
    assert s.private_key_for(58008) == KEY  # one key serves every chain


def test_private_key_per_chain() -> None:
    keys = f'{{"8996": "{KEY}", "58008": "{KEY2[2:]}"}}'
    s = Settings.from_env({"NETWORK_URL": TWO_URLS, "PROVIDER_PRIVATE_KEY": keys})
    assert s.private_key_for(8996) == KEY
    assert s.private_key_for(58008) == KEY2  # normalized like a single key
    assert KEY2[2:] not in repr(s) and KEY[2:] not in repr(s)
    with pytest.raises(SettingsError, match="no key for chain 1"):
        s.private_key_for(1)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NETWORK_URL": '{"8996": "http://a:1",}'}, "NETWORK_URL is not valid JSON"),
        ({"NETWORK_URL": "{}"}, "NETWORK_URL must be a non-empty JSON object"),
        ({"NETWORK_URL": '["http://a:1"]'}, "is not an RPC URL"),
        ({"NETWORK_URL": '{"mainnet": "http://a:1"}'}, "NETWORK_URL: 'mainnet' is not a chain id"),
        ({"NETWORK_URL": '{"0": "http://a:1"}'}, "NETWORK_URL: '0' is not a chain id"),
        ({"NETWORK_URL": '{"8996": 8545}'}, "NETWORK_URL: the value for chain 8996 must be"),
        ({"NETWORK_URL": '{"8996": "a:1"}'}, "NETWORK_URL='a:1' for chain 8996 is not an RPC"),
        ({"PROVIDER_PRIVATE_KEY": '{"8996": "0x12"}'}, "PROVIDER_PRIVATE_KEY for chain 8996"),
        ({"PROVIDER_PRIVATE_KEY": '{"8996": '}, "PROVIDER_PRIVATE_KEY is not valid JSON"),
        (
            {"NETWORK_URL": TWO_URLS, "PROVIDER_PRIVATE_KEY": f'{{"8996": "{KEY}"}}'},
            "PROVIDER_PRIVATE_KEY has no key for chain 58008",
        ),
    ],
)
def test_malformed_chain_maps_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


def test_bad_key_messages_never_echo_the_key() -> None:
    secret = "ab" * 31  # too short: malformed
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PROVIDER_PRIVATE_KEY": f'{{"8996": "{secret}"}}'})
    assert secret not in str(caught.value)


def test_settings_with_several_chains_stay_hashable() -> None:
    s = Settings.from_env({"NETWORK_URL": TWO_URLS, "PROVIDER_PRIVATE_KEY": KEY})
    assert hash(s) == hash(
        Settings.from_env({"NETWORK_URL": TWO_URLS, "PROVIDER_PRIVATE_KEY": KEY})
    )
