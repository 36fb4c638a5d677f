"""What a landing folder may say about itself: `_landing.json` (not an extract: only `.csv` and
`.parquet` files are read as extracts).

`{"as_of": "2026-11-25 23:59:59"}` records the instant the folder's extracts describe, so a
run without `--as-of` computes as of it instead of now: the committed sample tells the same
truth on any date. A folder without the file (a real landing folder) runs as of now.
"""

from __future__ import annotations

import json
from pathlib import Path

LANDING_FILE = "_landing.json"
# the one default landing folder of the CLI, the resources and `.env` (contract §1)
DEFAULT_LANDING = Path("data/landing")


class LandingFileInvalid(ValueError):
    """`_landing.json` exists but cannot be used; the message names it."""


def recorded_as_of(landing: Path) -> str | None:
    """The `as_of` recorded in `<landing>/_landing.json`, or None without one."""
    path = landing / LANDING_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("as_of")
    except (OSError, ValueError, AttributeError) as exc:
        raise LandingFileInvalid(f"{path} is not a JSON object ({exc})") from None
    if value is not None and not isinstance(value, str):
        raise LandingFileInvalid(f"{path}: as_of must be a timestamp text, not {value!r}")
    return value or None
