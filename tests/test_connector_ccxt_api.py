"""What connectors/feeds/ccxt_pro.py uses of ccxt beyond its unified API, checked on the
installed ccxt: when a ccxt release renames these internals this fails loudly (the feed
itself then runs without its bad-frame guard and logs a warning, it does not break)."""

from __future__ import annotations

import inspect
import re
import tomllib

import ccxt
import ccxt.pro
from ccxt.async_support.base.ws.client import Client

from tests.conftest import ROOT


def test_installed_ccxt_is_in_the_tested_range_of_pyproject() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if re.match(r"ccxt\b", d))
    assert re.fullmatch(r"ccxt>=4\.4,<5", spec), spec
    major, minor = (int(x) for x in ccxt.__version__.split(".")[:2])
    assert (major, minor) >= (4, 4) and major < 5, ccxt.__version__


def test_the_ws_internals_the_guard_wraps_are_still_there() -> None:
    ex = ccxt.pro.okx()
    try:
        assert callable(ex.client)
        assert list(inspect.signature(ex.client).parameters) == ["url"]
        params = list(inspect.signature(Client.handle_text_or_binary_message).parameters)
        assert params == ["self", "data"]
    finally:
        del ex


def test_451_and_403_still_map_to_exchange_not_available_with_the_status_in_the_text() -> None:
    assert ccxt.Exchange.httpExceptions["451"] is ccxt.ExchangeNotAvailable
    assert ccxt.Exchange.httpExceptions["403"] is ccxt.ExchangeNotAvailable
    src = inspect.getsource(ccxt.Exchange.handle_http_status_code)
    assert "codeAsString" in src  # the message carries the status code as text
