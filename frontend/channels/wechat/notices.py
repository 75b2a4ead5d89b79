"""The channels' fixed texts (`data/wechat_notices.yaml`, editable without code): welcome, refusals, the apology
for an interrupted reply, and the satisfaction menu's labels."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from frontend.channels.wechat.satisfaction import MenuLabels

NOTICES_FILE = Path(__file__).resolve().parents[2] / "data" / "wechat_notices.yaml"


@dataclass(frozen=True)
class Notices:
    welcome: str
    text_only: str
    too_long: str
    failed: str
    interrupted: str
    menu_head: str
    menu_up: str
    menu_down: str
    menu_thanks: str
    menu_expired: str
    menu_tail: str = ""

    @classmethod
    def load(cls, path: Path = NOTICES_FILE) -> Notices:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls(**{field.name: str(data[field.name] or "") for field in fields(cls) if field.name in data})

    @property
    def menu(self) -> MenuLabels:
        return MenuLabels(self.menu_head, self.menu_up, self.menu_down, self.menu_tail)
