"""FAQ cache: curated answers in Redis, matched on a normalised question, answered without calling the LLM."""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import unicodedata
from pathlib import Path

import yaml
from redis.asyncio import Redis

from frontend.protocol.faq import FaqEntry, FaqEntryIn

logger = logging.getLogger(__name__)

ENTRIES_KEY = "faq:entries"
LOOKUP_KEY = "faq:lookup"
SEEDED_KEY = "faq:seeded"


def normalize_question(text: str) -> str:
    """NFKC (full-width -> half-width), case-folded, without punctuation, symbols or spaces."""
    key = text
    for _ in range(4):  # dropping a character can let NFKC compose its neighbours anew: repeat to a fixed point
        folded = unicodedata.normalize("NFKC", key).casefold()
        stripped = unicodedata.normalize("NFKC", "".join(c for c in folded if unicodedata.category(c)[0] not in "PSZC"))
        if stripped == key:
            break
        key = stripped
    return key


def faq_id(question: str) -> str:
    return hashlib.sha1(normalize_question(question).encode("utf-8")).hexdigest()[:12]


def load_seed(path: Path) -> list[FaqEntryIn]:
    """The operator-editable seed file: `faqs: [{question, answer, aliases?, intent?}, ...]`."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    items = data.get("faqs") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list `faqs`")
    return [FaqEntryIn.model_validate(item) for item in items]


class FaqStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def upsert(self, entry: FaqEntryIn) -> FaqEntry:
        stored = FaqEntry(id=faq_id(entry.question), **entry.model_dump())
        keys = {normalize_question(q) for q in [entry.question, *entry.aliases]} - {""}
        if not keys:
            raise ValueError("the question has no letters or digits")
        old = await self._redis.hget(ENTRIES_KEY, stored.id)
        async with self._redis.pipeline(transaction=True) as pipe:
            if old is not None:
                old_entry = FaqEntry.model_validate_json(old)
                stale = {normalize_question(q) for q in [old_entry.question, *old_entry.aliases]} - keys
                if stale:
                    pipe.hdel(LOOKUP_KEY, *stale)
            pipe.hset(ENTRIES_KEY, stored.id, stored.model_dump_json())
            pipe.hset(LOOKUP_KEY, mapping=dict.fromkeys(keys, stored.id))
            await pipe.execute()
        return stored

    async def list(self) -> list[FaqEntry]:
        raw = await self._redis.hgetall(ENTRIES_KEY)
        entries = [FaqEntry.model_validate_json(v) for v in raw.values()]
        return sorted(entries, key=lambda e: e.question)

    async def delete(self, entry_id: str) -> bool:
        raw = await self._redis.hget(ENTRIES_KEY, entry_id)
        if raw is None:
            return False
        entry = FaqEntry.model_validate_json(raw)
        keys = [normalize_question(q) for q in [entry.question, *entry.aliases]]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(ENTRIES_KEY, entry_id)
            pipe.hdel(LOOKUP_KEY, *keys)
            await pipe.execute()
        return True

    async def search(self, query: str, limit: int = 10) -> builtins.list[FaqEntry]:
        """Entries whose question or aliases (first) or answer contain every word of `query`, normalised."""
        words = [w for w in (normalize_question(part) for part in query.split()) if w]
        if not words:
            return []
        ranked = []
        for entry in await self.list():
            asked = " ".join(normalize_question(q) for q in [entry.question, *entry.aliases])
            answer = normalize_question(entry.answer)
            if all(w in asked for w in words):
                ranked.append((0, entry))
            elif all(w in asked or w in answer for w in words):
                ranked.append((1, entry))
        return [entry for _, entry in sorted(ranked, key=lambda r: r[0])][:limit]

    async def match(self, message: str) -> FaqEntry | None:
        key = normalize_question(message)
        if not key:
            return None
        entry_id = await self._redis.hget(LOOKUP_KEY, key)
        if entry_id is None:
            return None
        raw = await self._redis.hget(ENTRIES_KEY, entry_id)
        return FaqEntry.model_validate_json(raw) if raw is not None else None

    async def seed_once(self, path: Path) -> int:
        """Load the seed file into an empty cache once; later admin edits and deletions are kept.

        The "seeded" mark is written only after every entry is stored, so a start that failed part-way (file
        unreadable, Redis gone mid-write) seeds again next time; entries are keyed by question, so that is safe.
        """
        if await self._redis.exists(SEEDED_KEY):
            return 0
        entries = load_seed(path)
        for entry in entries:
            await self.upsert(entry)
        await self._redis.set(SEEDED_KEY, json.dumps({"file": path.name}))
        logger.info("seeded %d FAQ entries from %s", len(entries), path.name)
        return len(entries)
