"""What a careful engineer would write instead of finlit-map for the
learners collection: pymongo's C BSON decoder, the learners mapping's
rules by hand, deterministic UUIDv5 ids, and psycopg 3's COPY into the
indexed learners table, one transaction.

    python learners_copy.py DUMP/learners.bson postgresql://…/db

It maps exactly what mappings/learners.toml maps, so the benchmark can
check that both produce the same rows (their digests are printed by
benches/bench.sh). Not part of CI.
"""

import json
import sys
import uuid
from datetime import timezone
from zoneinfo import ZoneInfo

import bson
import psycopg

NAMESPACE = uuid.UUID("3d5c1a4e-8f2b-5c7d-9e1f-6a4b2c8d0e7f")
COLUMNS = [
    "learner_id", "email", "display_name", "native_language", "english_proficiency",
    "immigration_status", "financial_experience_level", "daily_goal_minutes", "timezone",
    "streak_count", "streak_last_date", "total_xp", "country_of_origin", "visa_type",
    "has_ssn", "sends_remittances", "financial_goals", "created_at", "last_active_at",
]
ZONES = {}


def zone(name):
    z = ZONES.get(name)
    if z is None:
        z = ZONES[name] = ZoneInfo(name)
    return z


def wall(d):
    """A BSON date (UTC) as the TIMESTAMP column's wall clock in UTC."""
    return None if d is None else d.replace(tzinfo=None)


def row(doc):
    profile = doc.get("profile") or {}
    game = doc.get("gamification") or {}
    tz = doc.get("timezone")
    last = game.get("streak_last_date")
    level = doc.get("financial_experience_level")
    goals = profile.get("financial_goals")
    return (
        uuid.uuid5(NAMESPACE, str(doc["_id"])),
        doc["email"].strip().lower(),
        doc.get("display_name"),
        profile.get("native_language"),
        profile.get("english_proficiency") or "intermediate",
        profile.get("immigration_status"),
        ("novice" if level == "beginner" else level) or "novice",
        game.get("daily_goal_minutes", 10),
        tz or "America/New_York",
        game.get("streak_count", 0),
        None if last is None else last.replace(tzinfo=timezone.utc).astimezone(zone(tz or "America/New_York")).date(),
        game.get("total_xp", 0),
        profile.get("country_of_origin"),
        profile.get("visa_type"),
        profile.get("has_ssn"),
        profile.get("sends_remittances"),
        None if goals is None else json.dumps(goals, separators=(",", ":"), ensure_ascii=False),
        wall(doc.get("created_at")),
        wall(doc.get("last_active_at")),
    )


def main(path, url):
    n = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur, open(path, "rb") as f:
        with cur.copy(f"COPY learners ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for doc in bson.decode_file_iter(f):
                copy.write_row(row(doc))
                n += 1
    print(n)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
