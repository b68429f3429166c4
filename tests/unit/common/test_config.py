"""Configuration: typed loading, .env files, and the docs generated from the declarations."""

from __future__ import annotations

from pathlib import Path

import pytest

from pantree_common import config as config_loader
from pantree_common.errors import ConfigError
from services.mesh import MeshConfig

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_and_typed_overrides() -> None:
    config = config_loader.load(
        MeshConfig,
        {"PORT": "6000", "PANTREE_SHUTDOWN_GRACE_S": "2.5", "PANTREE_EMBEDDER": "hashing"},
    )
    assert config.server.port == 6000
    assert config.server.shutdown_grace_s == 2.5
    assert config.frequency.min_purchases == 3
    assert config.vectors.store_uri.endswith("pantree/milvus.db")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT must be an integer"),
        ({"PANTREE_SHUTDOWN_GRACE_S": "inf"}, "must be a finite number"),
        ({"PANTREE_MIN_PURCHASES": "1"}, "PANTREE_MIN_PURCHASES must be 2-50"),
        ({"PANTREE_EMBEDDER": "gpt"}, "PANTREE_EMBEDDER must be one of"),
        ({"PANTREE_EMBEDDER": "openai"}, "PANTREE_EMBEDDER=openai needs PANTREE_EMBEDDINGS_URL"),
        ({"PANTREE_EMBEDDER_DEVICE": "tpu"}, "PANTREE_EMBEDDER_DEVICE must be auto, cpu, cuda"),
        ({"PANTREE_EMBEDDER_BATCH_SIZE": "-1"}, "PANTREE_EMBEDDER_BATCH_SIZE must be 0-8192"),
        ({"PANTREE_LOG_LEVEL": "LOUD"}, "PANTREE_LOG_LEVEL"),
        ({"PANTREE_RELATED_TOP_K": "0"}, "PANTREE_RELATED_TOP_K must be 1-50"),
        ({"PANTREE_MILVUS_INDEX": "hnsw"}, "PANTREE_MILVUS_INDEX must be one of ivf_flat, flat"),
        ({"PANTREE_SEED_MIN_SIMILARITY": "1.5"}, "PANTREE_SEED_MIN_SIMILARITY must be 0-1"),
        ({"PANTREE_CATALOG": " "}, "PANTREE_CATALOG must not be empty"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_loader.load(MeshConfig, env)


def test_secrets_are_masked_in_listings() -> None:
    config = config_loader.load(MeshConfig, {"PANTREE_MILVUS_TOKEN": "root:hunter2"})
    listed = {s.env_var: s for s in config_loader.settings(config)}
    assert listed["PANTREE_MILVUS_TOKEN"].value == "<secret>"
    assert all("hunter2" not in s.value for s in listed.values())


def test_dotenv_values_sit_under_the_real_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text('# comment\nPORT=7000\nexport PANTREE_DATA_DIR="/srv/pantree"\n\n')
    monkeypatch.setenv("PORT", "7001")
    env = config_loader.environment(dotenv)
    assert env["PORT"] == "7001"
    assert env["PANTREE_DATA_DIR"] == "/srv/pantree"


def test_malformed_dotenv_line_is_reported_with_its_number(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("PORT=1\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"\.env:2"):
        config_loader.read_dotenv(dotenv)


def test_env_example_and_readme_table_match_the_declarations() -> None:
    defaults = MeshConfig()
    assert (ROOT / ".env.example").read_text() == config_loader.env_example(defaults), (
        "run `pantree config > .env.example`"
    )
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- settings-table -->\n")[1].split("<!-- /settings-table -->")[0]
    assert table == config_loader.markdown_table(defaults), (
        "run `pantree config --format markdown` and paste it into the README"
    )


def test_every_setting_has_one_variable_and_a_description() -> None:
    listed = list(config_loader.settings(MeshConfig()))
    names = [s.env_var for s in listed]
    assert len(names) == len(set(names))
    assert all(s.description.endswith(".") for s in listed)
