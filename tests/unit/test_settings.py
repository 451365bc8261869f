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


def test_pulling_missing_images_is_on_unless_turned_off() -> None:
    assert Settings.from_env({}).pull_images is True
    assert Settings.from_env({"TIDEWATER_PULL_IMAGES": "false"}).pull_images is False
