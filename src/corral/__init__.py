"""corral: turn a dataset of texts into validated, typed records with a language model.

Start with :class:`Extractor` (async) or :func:`run` (sync); see the README for the CLI.
"""

from corral._extractor import Extractor, run
from corral.backends import Backend, Completion, Mode, Profile, Request, open_backend
from corral.engine._strategies import Order, Strategy, run_strategy
from corral.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    CorralError,
    InputError,
    ItemError,
    ModelNotFound,
    ModeRefused,
    OutputInvalid,
    ProviderError,
    RateLimited,
    SchemaError,
    ServerError,
    TransportError,
    UnsupportedParameter,
    UsageError,
)
from corral.io.items import read_items
from corral.schema import ResponseSpec, load_spec
from corral.types import ErrorInfo, Item, Outcome, Usage

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "Backend",
    "BadRequest",
    "Completion",
    "ConfigError",
    "CorralError",
    "ErrorInfo",
    "Extractor",
    "InputError",
    "Item",
    "ItemError",
    "Mode",
    "ModeRefused",
    "ModelNotFound",
    "Order",
    "Outcome",
    "OutputInvalid",
    "Profile",
    "ProviderError",
    "RateLimited",
    "Request",
    "ResponseSpec",
    "SchemaError",
    "ServerError",
    "Strategy",
    "TransportError",
    "UnsupportedParameter",
    "Usage",
    "UsageError",
    "__version__",
    "load_spec",
    "open_backend",
    "read_items",
    "run",
    "run_strategy",
]
