"""Nothing local contacts a hub: building and loading the built-in suite and fitting, saving and loading peft-backed
methods on it, with the hub's offline switch off and every socket refused, make no connection attempt. (peft's
`save_embedding_layers="auto"` looked the zoo's made-up base model id `lora-compose-bench/builtin-<hash>` up online.)"""

from __future__ import annotations

import copy
import socket
import warnings

import huggingface_hub.constants
import pytest

from bench.builtin_suite import load_builtin_suite
from bench.suites import SuiteOptions
from methods.lora_adapter import save_peft_adapter
from methods.registry import load_all_methods, make_config
from tests.conftest import tiny_cell
from tests.test_builtin_suite import tiny_settings

HUB_WARNINGS = ("Unable to fetch remote file", "Could not find a config file")  # peft's, when it asked a hub
ORACLE_OPTIONS = {"epochs": "1", "max_examples": "8"}


def refuse_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make sockets refuse to connect and turn the hub's offline switch off; return the list of addresses tried."""
    attempts: list[str] = []

    def refuse(address) -> None:
        attempts.append(str(address))
        raise OSError(f"the tests forbid network access (tried {address})")

    monkeypatch.setattr(socket.socket, "connect", lambda self, address: refuse(address))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, address: refuse(address))
    monkeypatch.setattr(socket, "create_connection", lambda address, *args, **kwargs: refuse(address))
    # conftest sets HF_HUB_OFFLINE, which hides a hub lookup instead of preventing it; peft reads it on every call
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return attempts


def hub_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if any(text in str(w.message) for text in HUB_WARNINGS)]


@pytest.fixture(scope="module")
def offline_build(tmp_path_factory):
    """The tiny built-in suite built from scratch and loaded without a network: (suite, addresses tried, warnings)."""
    with pytest.MonkeyPatch.context() as monkeypatch, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attempts = refuse_network(monkeypatch)
        cache = tmp_path_factory.mktemp("offline_builtin")
        suite = load_builtin_suite(SuiteOptions(cache_dir=cache, device="cpu"), tiny_settings())
    return suite, attempts, hub_warnings(caught)


@pytest.fixture()
def no_network(monkeypatch) -> list[str]:
    return refuse_network(monkeypatch)


def fresh_cell(suite):
    return tiny_cell(suite, model=copy.deepcopy(suite.model), composite_train=suite.cells[("math", "zh")].composite_train)


def test_building_and_loading_the_builtin_suite_contacts_no_hub(offline_build):
    suite, attempts, warned = offline_build
    assert suite.base_model_id.startswith("lora-compose-bench/builtin-")  # a made-up id no hub has
    assert attempts == [] and warned == []


def test_a_peft_merge_and_the_oracle_fit_save_and_load_without_a_hub(offline_build, no_network, recwarn, tmp_path):
    suite, methods = offline_build[0], load_all_methods()
    merge = methods["linear"](fresh_cell(suite), make_config(methods["linear"], {}))
    merge.fit()
    merge.save(tmp_path)
    methods["linear"](fresh_cell(suite), make_config(methods["linear"], {})).load(tmp_path)
    oracle_config = make_config(methods["oracle"], ORACLE_OPTIONS)
    oracle = methods["oracle"](fresh_cell(suite), oracle_config)
    oracle.fit()
    save_peft_adapter(oracle.model, tmp_path / "oracle")  # what Oracle.save should call (see the test below)
    methods["oracle"](fresh_cell(suite), oracle_config).load(tmp_path / "oracle")
    assert no_network == [] and hub_warnings(recwarn.list) == []


def test_the_oracles_own_save_contacts_no_hub(offline_build, no_network, tmp_path):
    methods = load_all_methods()
    oracle = methods["oracle"](fresh_cell(offline_build[0]), make_config(methods["oracle"], ORACLE_OPTIONS))
    oracle.fit()
    oracle.save(tmp_path)
    assert no_network == []
