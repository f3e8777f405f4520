"""The registry of destination kinds: each name's package is imported only when the kind is looked up, and
the kinds marked as writing back are exactly those whose KIND is a RecordKind."""

from __future__ import annotations

import subprocess
import sys

from connectors.registry import KINDS, RECORD_KINDS


def test_the_kinds_that_write_back_are_the_record_kinds():
    assert set(RECORD_KINDS) == {name for name in KINDS if hasattr(KINDS[name], "scheme")}
    assert all(KINDS[name] is RECORD_KINDS[name] for name in RECORD_KINDS)
    assert "nope" not in KINDS and KINDS.get("nope") is None


def test_a_kind_is_imported_when_it_is_looked_up():
    script = (
        "import sys; from connectors.registry import KINDS; assert 'folder' in KINDS;"
        "assert 'connectors.airtable' not in sys.modules and 'slack_sdk' not in sys.modules;"
        "KINDS['airtable']; assert 'connectors.airtable' in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
