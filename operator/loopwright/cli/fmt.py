"""Small readers and formatters of API objects (plain dicts, as the API server sends them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from loopwright.reports import html

Obj = Mapping[str, Any]
number = html.number


def dig(obj: Any, *path: str | int) -> Any:
    """``obj[path[0]][path[1]]...``, or None where anything along the way is missing."""
    for key in path:
        if isinstance(key, int):
            if not isinstance(obj, list) or not -len(obj) <= key < len(obj):
                return None
        elif not isinstance(obj, Mapping):
            return None
        obj = obj[key] if isinstance(key, int) else obj.get(key)
    return obj


def name(obj: Obj) -> str:
    return str(dig(obj, "metadata", "name") or "")


def condition(obj: Obj, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in dig(obj, "status", "conditions") or () if c.get("type") == type_), None)


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def duration(seconds: float) -> str:
    """kubectl's short durations: 45s, 3m20s, 45m, 3h20m, 47h, 3d4h, 120d."""
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 600:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if s < 3 * 3600:
        return f"{minutes}m"
    if s < 8 * 3600:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if s < 2 * 86400:
        return f"{hours}h"
    if s < 8 * 86400:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def age(value: Any, now: datetime) -> str:
    moment = parse_time(value)
    return duration((now - moment).total_seconds()) if moment else ""


def ago(value: Any, now: datetime) -> str:
    text = age(value, now)
    return f"{text} ago" if text else "never"


def digest(value: Any) -> str:
    """A content digest as shown everywhere: the first 12 hex digits."""
    if not value:
        return "-"
    return str(value).removeprefix("sha256:")[:12]


def metrics(values: Mapping[str, Any] | None, *, primary: str | None = None, limit: int = 4) -> str:
    """``accuracy 0.8612 f1_macro 0.8120``, the primary metric first."""
    if not values:
        return "-"
    keys = sorted(values, key=lambda k: (k != primary, k))[:limit]
    more = len(values) - len(keys)
    return " ".join(f"{k} {number(values[k])}" for k in keys) + (f" +{more}" if more else "")


def joined(parts: Sequence[str | None], sep: str = " · ") -> str:
    return sep.join(p for p in parts if p)
