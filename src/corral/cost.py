"""What requests cost, and the budget that caps a job.

Prices are per million tokens, input and output, for the provider's standard (online) tier. The
table below is dated: providers change prices, so ``--prices FILE`` overrides or extends it::

    {"gpt-4o-mini": {"input": 0.15, "output": 0.60}, "my-finetune": {"input": 0.30, "output": 1.20}}

A model name matches its exact entry, else the longest entry it starts with, so dated snapshots
(``gpt-4o-mini-2024-07-18``, ``claude-sonnet-4-20250514``) find their family. Self-hosted backends
(the embedded model, Ollama, vLLM, llama.cpp) and the simulator cost nothing. A model with no price
has an unknown cost: it is reported as such, and ``--max-cost`` refuses to run blind.

The :class:`Budget` reserves each request's worst case (its estimated prompt plus ``max_tokens`` of
output) before it is sent and settles it to the real cost when the answer comes back, so the spend of
everything in flight never exceeds the cap.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from corral.backends.base import Profile
from corral.errors import BudgetReached, ConfigError
from corral.types import Usage

__all__ = ["PRICES", "PRICES_DATE", "Budget", "Price", "load_prices", "price_for", "unpriced"]

#: when the table below was last checked against the providers' pricing pages
PRICES_DATE = "2025-11-01"


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float

    def of(self, usage: Usage) -> float:
        return (usage.prompt_tokens * self.input + usage.completion_tokens * self.output) / 1e6

    def worst_case(self, prompt_tokens: float, max_tokens: int) -> float:
        return (prompt_tokens * self.input + max_tokens * self.output) / 1e6


FREE = Price(0.0, 0.0)

PRICES: dict[str, Price] = {
    # OpenAI (https://openai.com/api/pricing), standard tier
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "o3": Price(2.00, 8.00),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    # Anthropic (https://www.anthropic.com/pricing#api)
    "claude-opus-4-5": Price(5.00, 25.00),
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-opus-4": Price(15.00, 75.00),
    "claude-sonnet-4-5": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-haiku-4-5": Price(1.00, 5.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-haiku": Price(0.25, 1.25),
    # corral's own simulator (``corral sim``)
    "sim-": FREE,
}


def price_for(model: str, profile: Profile, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of ``model`` on a backend with ``profile``; None when nobody knows it."""
    if profile.self_hosted:
        return FREE
    table = {**PRICES, **(overrides or {})}
    if model in table:
        return table[model]
    family = max((name for name in table if model.startswith(name)), key=len, default=None)
    return table[family] if family is not None else None


def load_prices(path: str | Path) -> dict[str, Price]:
    """Read a prices file: ``{"model": {"input": USD_PER_M, "output": USD_PER_M}, ...}`` (JSON)."""
    name = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"prices file {name} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"prices file {name} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f'prices file {name} must hold an object: {{"model": {{"input": 0.15, "output": 0.6}}}}'
        )
    prices: dict[str, Price] = {}
    for model, entry in data.items():
        values = entry if isinstance(entry, dict) else {}
        try:
            price = Price(float(values["input"]), float(values["output"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f'prices file {name}: {model!r} needs numeric "input" and "output" (USD per million tokens)'
            ) from None
        if (
            not (math.isfinite(price.input) and math.isfinite(price.output))
            or min(price.input, price.output) < 0
        ):
            raise ConfigError(f"prices file {name}: {model!r} needs prices of 0 or more, got {values}")
        prices[str(model)] = price
    return prices


def unpriced(model: str, caps: str = "a cost cap") -> ConfigError:
    """The error for a cost cap on a model whose price is unknown: corral does not run blind."""
    return ConfigError(
        f"no price is known for model {model!r}, so {caps} cannot be kept: "
        'pass --prices FILE with {"MODEL": {"input": USD_PER_M, "output": USD_PER_M}}'
    )


class Budget:
    """At most ``limit`` dollars for a job: what it spent before (``spent``), now, and in flight.

    A ``parent`` is a budget shared with other jobs (``corral serve --max-total-cost``): every
    reservation must fit both, and every settlement counts in both. ``option`` names the limit in
    messages, so that the user knows which one to raise.
    """

    def __init__(
        self, limit: float, *, spent: float = 0.0, parent: Budget | None = None, option: str = "--max-cost"
    ) -> None:
        if not limit >= 0:
            raise ConfigError(f"{option} must be 0 or more, got {limit}")
        self.limit = limit
        self.spent = spent
        self.reserved = 0.0
        self.parent = parent
        self.option = option
        #: set once a request was refused: the job stops starting new items
        self.reached = False

    def reserve(self, amount: float) -> None:
        """Hold ``amount`` for a request about to be sent, or raise :class:`BudgetReached`."""
        if self.reached or self.spent + self.reserved + amount > self.limit:
            self.reached = True
            raise BudgetReached(
                f"budget reached: ${self.spent:.4f} spent of {self.option} ${self.limit:.2f} "
                f"(${self.reserved:.4f} more in flight); the next request could cost up to ${amount:.4f}",
                spent=self.spent,
                limit=self.limit,
            )
        if self.parent is not None:
            try:
                self.parent.reserve(amount)
            except BudgetReached:
                self.reached = True
                raise
        self.reserved += amount

    def settle(self, reserved: float, actual: float) -> None:
        """The request came back (``actual`` dollars; 0 for a failure nobody bills)."""
        self.reserved = max(0.0, self.reserved - reserved)
        self.spent += actual
        if self.parent is not None:
            self.parent.settle(reserved, actual)
