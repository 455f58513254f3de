"""Files people write by hand (job specs, policies): JSON, or YAML when it is not JSON."""

from __future__ import annotations

import json
from typing import Any


def load_json_or_yaml(text: str) -> Any:
    """The data in `text`; ValueError saying why when it is neither JSON nor YAML.

    JSON is tried first (it is valid YAML too, but the JSON parser is faster and needs no
    import); PyYAML is imported only for YAML.
    """
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"neither JSON nor YAML: {exc}") from None
