"""The README's hand-driven walk-through runs exactly as written and does what it says."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from bitcoin.core import CTransaction

from regtest.control import load_endpoint
from regtest.rpc import Rpc

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- the block below runs as written in tests/integration/test_readme_walkthrough.py -->"


def _walkthrough() -> list[str]:
    text = (ROOT / "README.md").read_text()
    assert MARKER in text, "the README lost its tested walk-through"
    block = re.search(r"```sh\n(.*?)```", text[text.index(MARKER):], re.S)
    assert block is not None
    return block.group(1).strip().splitlines()


def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    """Every line of the walk-through succeeds; Bob's 25,000 sat and Alice's change are on
    chain in her commitment, exactly the channel minus the commitment fee."""
    lines = _walkthrough()
    assert lines[-1].startswith("chanlab alice stop")
    env = {**os.environ, "CHANLAB_HOME": str(tmp_path / "home")}
    body = "\n".join(lines[:-1])
    script = f"set -euo pipefail\n{body}\nchanlab alice --json channels > {tmp_path}/ch.json\n"
    try:
        run = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=240)
        assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        assert "paid 25,000,000 msat" in run.stdout
        assert "open_channel" in run.stdout or "revoke_and_ack" in run.stdout  # the trace
        channels = json.loads((tmp_path / "ch.json").read_text())
        assert len(channels) == 1 and channels[0]["closing_txid"]
        endpoint = load_endpoint(tmp_path / "home" / "bitcoind.json")
        rpc = Rpc(endpoint.rpc_url, auth=endpoint.rpc_auth())
        commitment = CTransaction.deserialize(
            bytes.fromhex(rpc.call("getrawtransaction", channels[0]["closing_txid"])))
        values = sorted(out.nValue for out in commitment.vout)
        assert 25_000 in values                      # Bob's to_remote: exactly what he was paid
        funding_sat = channels[0]["funding_sat"]
        assert funding_sat == 500_000
        fee = funding_sat - sum(values)
        assert values == sorted([25_000, funding_sat - 25_000 - fee]) and 0 < fee < 5_000
    finally:
        subprocess.run(["bash", "-c", ". .venv/bin/activate; " + lines[-1].replace(";", " ;")],
                       cwd=ROOT, env=env, capture_output=True, timeout=120)
