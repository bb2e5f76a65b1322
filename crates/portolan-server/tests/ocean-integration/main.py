"""A small Ocean integration for Portolan's test of Port's integration framework.

It reads its source system, a JSON file named by the `dataFile` setting, and returns each kind's
items; Ocean maps them with `.port/resources/port-app-config.yml` and writes them to the Port API
it is pointed at.
"""

import json
from typing import Any

from port_ocean.context.ocean import ocean


def read_source() -> dict[str, list[dict[str, Any]]]:
    with open(ocean.integration_config["data_file"], encoding="utf-8") as source:
        return json.load(source)


@ocean.on_resync()
async def on_resync(kind: str) -> list[dict[str, Any]]:
    return read_source().get(kind, [])
