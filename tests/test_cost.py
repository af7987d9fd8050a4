"""Prices and the budget: which price a model name gets, what a request costs, and the cap."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from corral.backends.base import Mode, Profile
from corral.cost import FREE, PRICES, PRICES_DATE, Budget, Price, load_prices, price_for
from corral.errors import BudgetReached, ConfigError
from corral.types import Usage

CLOUD = Profile("openai", (Mode.JSON_SCHEMA, Mode.TOOLS))
SELF_HOSTED = Profile("ollama", (Mode.JSON_SCHEMA,), self_hosted=True)


# --- price_for -------------------------------------------------------------------------------


def test_exact_model_names_get_their_own_price() -> None:
    assert price_for("gpt-4o", CLOUD) == Price(2.50, 10.00)
    assert price_for("gpt-4o-mini", CLOUD) == Price(0.15, 0.60)
    assert price_for("claude-haiku-4-5", CLOUD) == Price(1.00, 5.00)


def test_dated_snapshots_find_their_longest_family() -> None:
    assert price_for("gpt-4o-mini-2024-07-18", CLOUD) == PRICES["gpt-4o-mini"]
    assert PRICES["gpt-4o-mini"] != PRICES["gpt-4o"]  # the check above tells the two apart
    assert price_for("gpt-4o-2024-08-06", CLOUD) == PRICES["gpt-4o"]
    assert price_for("claude-sonnet-4-5-20250929", CLOUD) == Price(3.00, 15.00)
    assert price_for("claude-sonnet-4-5-20250929", CLOUD) == PRICES["claude-sonnet-4-5"]
    assert price_for("claude-opus-4-1-20250805", CLOUD) == Price(15.00, 75.00)
    assert price_for("claude-opus-4-5-20251101", CLOUD) == Price(5.00, 25.00)
    assert price_for("o3-mini-2025-01-31", CLOUD) == PRICES["o3-mini"]


def test_unknown_models_have_no_price() -> None:
    assert price_for("llama-3-70b", CLOUD) is None
    assert price_for("gpt-4", CLOUD) is None  # a prefix of entries, but no entry is a prefix of it
    assert price_for("", CLOUD) is None


def test_self_hosted_backends_are_free_whatever_the_model() -> None:
    assert price_for("llama-3-70b", SELF_HOSTED) == Price(0.0, 0.0)
    assert price_for("gpt-4o", SELF_HOSTED) == Price(0.0, 0.0)
    assert price_for("gpt-4o", SELF_HOSTED, {"gpt-4o": Price(9.0, 9.0)}) == Price(0.0, 0.0)


def test_overrides_win_over_the_table_and_extend_it() -> None:
    overrides = {"gpt-4o": Price(1.0, 2.0), "my-finetune": Price(0.30, 1.20)}
    assert price_for("gpt-4o", CLOUD, overrides) == Price(1.0, 2.0)
    assert price_for("gpt-4o-2024-08-06", CLOUD, overrides) == Price(1.0, 2.0)
    assert price_for("gpt-4o-mini", CLOUD, overrides) == Price(0.15, 0.60)  # longer entry still wins
    assert price_for("my-finetune", CLOUD, overrides) == Price(0.30, 1.20)
    assert price_for("my-finetune-v2", CLOUD, overrides) == Price(0.30, 1.20)
    assert price_for("my-finetune", CLOUD) is None
    assert PRICES["gpt-4o"] == Price(2.50, 10.00)  # the table itself is untouched


def test_the_simulator_is_free() -> None:
    assert price_for("sim-1", CLOUD) == Price(0.0, 0.0)
    assert price_for("sim-1", CLOUD) is FREE


# --- Price arithmetic ------------------------------------------------------------------------


def test_price_of_usage_is_per_million_tokens() -> None:
    price = Price(2.0, 8.0)
    assert price.of(Usage(1000, 500)) == 0.006  # (1000 * 2 + 500 * 8) / 1e6
    assert price.of(Usage(1_000_000, 0)) == 2.0
    assert price.of(Usage(0, 1_000_000)) == 8.0
    assert price.of(Usage()) == 0.0
    assert FREE.of(Usage(10**9, 10**9)) == 0.0


def test_worst_case_counts_the_prompt_and_every_allowed_output_token() -> None:
    price = Price(2.0, 8.0)
    assert price.worst_case(1500.0, 256) == 0.005048  # (1500 * 2 + 256 * 8) / 1e6
    assert price.worst_case(0.0, 1_000_000) == 8.0
    assert price.worst_case(1_000_000.0, 0) == 2.0


# --- load_prices -----------------------------------------------------------------------------


def test_load_prices_reads_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"gpt-4o-mini": {"input": 0.15, "output": 0.6}, "mine": {"input": 0, "output": 2}}')
    assert load_prices(path) == {"gpt-4o-mini": Price(0.15, 0.6), "mine": Price(0.0, 2.0)}
    assert load_prices(str(path)) == load_prices(path)
    path.write_text("{}")
    assert load_prices(path) == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"m": {"input": 0.1, "output": 0.2', "is not readable JSON"),
        ('[{"input": 0.1, "output": 0.2}]', "must hold an object"),
        ('"gpt-4o"', "must hold an object"),
        ('{"m": {"input": 0.1}}', '\'m\' needs numeric "input" and "output"'),
        ('{"m": {"output": 0.1}}', '\'m\' needs numeric "input" and "output"'),
        ('{"m": {"input": "cheap", "output": 0.1}}', '\'m\' needs numeric "input" and "output"'),
        ('{"m": {"input": null, "output": 0.1}}', '\'m\' needs numeric "input" and "output"'),
        ('{"m": 0.5}', '\'m\' needs numeric "input" and "output"'),
        ('{"m": {"input": -0.1, "output": 0.2}}', "'m' needs prices of 0 or more"),
        ('{"m": {"input": 0.1, "output": -2}}', "'m' needs prices of 0 or more"),
    ],
)
def test_load_prices_refuses_a_bad_file_naming_it(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "my-prices.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_prices(path)
    message = str(caught.value)
    assert f"prices file {path}" in message
    assert problem in message


def test_load_prices_refuses_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(ConfigError, match="does not exist") as caught:
        load_prices(path)
    assert str(caught.value) == f"prices file {path} does not exist"


def test_load_prices_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"caf\xe9": {"input": 1, "output": 2}}')
    with pytest.raises(ConfigError, match="is not readable JSON") as caught:
        load_prices(path)
    assert str(path) in str(caught.value)


def test_load_prices_refuses_a_price_that_is_not_a_number(tmp_path: Path) -> None:
    path = tmp_path / "nan.json"
    path.write_text('{"m": {"input": NaN, "output": 1.0}}')  # Python's json module accepts NaN
    with pytest.raises(ConfigError, match=r"nan\.json"):
        load_prices(path)


# --- Budget ----------------------------------------------------------------------------------


def test_reserving_within_the_limit_holds_the_amount() -> None:
    budget = Budget(1.0)
    budget.reserve(0.5)
    budget.reserve(0.25)
    assert (budget.spent, budget.reserved, budget.reached) == (0.0, 0.75, False)
    budget.reserve(0.25)  # exactly up to the limit is allowed
    assert (budget.reserved, budget.reached) == (1.0, False)


def test_reserving_beyond_the_limit_is_refused_and_stays_refused() -> None:
    budget = Budget(1.0)
    budget.reserve(0.75)
    with pytest.raises(BudgetReached) as caught:
        budget.reserve(0.5)
    assert (caught.value.spent, caught.value.limit) == (0.0, 1.0)
    assert caught.value.kind == "budget"
    assert "$0.0000 spent of --max-cost $1.00" in str(caught.value)
    assert "($0.7500 more in flight)" in str(caught.value)
    assert "could cost up to $0.5000" in str(caught.value)
    assert budget.reached is True
    assert budget.reserved == 0.75  # the refused amount was not held
    # Once reached, nothing new starts, even a request that would fit.
    with pytest.raises(BudgetReached):
        budget.reserve(0.125)
    budget.settle(0.75, 0.5)
    with pytest.raises(BudgetReached):
        budget.reserve(0.0)
    assert (budget.spent, budget.reserved, budget.reached) == (0.5, 0.0, True)


def test_settle_moves_the_reservation_to_what_was_spent() -> None:
    budget = Budget(1.0)
    budget.reserve(0.5)
    budget.reserve(0.25)
    budget.settle(0.5, 0.125)
    assert (budget.spent, budget.reserved) == (0.125, 0.25)
    budget.settle(0.25, 0.0)  # a failure nobody bills
    assert (budget.spent, budget.reserved) == (0.125, 0.0)
    budget.settle(0.5, 0.0)  # never below zero in flight
    assert budget.reserved == 0.0
    budget.reserve(0.875)  # what was settled below its reservation is free again
    assert budget.reached is False


def test_spent_by_earlier_runs_counts_against_the_limit() -> None:
    budget = Budget(1.0, spent=0.75)
    with pytest.raises(BudgetReached) as caught:
        budget.reserve(0.5)
    assert (caught.value.spent, caught.value.limit) == (0.75, 1.0)
    assert budget.reached is True

    budget = Budget(1.0, spent=0.75)
    budget.reserve(0.25)
    assert (budget.spent, budget.reserved, budget.reached) == (0.75, 0.25, False)


def test_a_zero_budget_allows_only_free_requests() -> None:
    budget = Budget(0.0)
    budget.reserve(0.0)
    assert budget.reached is False
    with pytest.raises(BudgetReached):
        budget.reserve(0.000001)


def test_a_negative_limit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"--max-cost must be 0 or more, got -1\.0"):
        Budget(-1.0)


# --- the table -------------------------------------------------------------------------------


def test_prices_date_is_an_iso_date() -> None:
    assert isinstance(PRICES_DATE, str)
    assert datetime.date.fromisoformat(PRICES_DATE).isoformat() == PRICES_DATE
    assert datetime.date(2024, 1, 1) <= datetime.date.fromisoformat(PRICES_DATE) <= datetime.date.today()


def test_every_table_price_is_non_negative() -> None:
    assert PRICES
    for model, price in PRICES.items():
        assert price.input >= 0 and price.output >= 0, model
