#!/usr/bin/env bash
# `finlit-map sync` throughput against nx-27017, on this machine.
#
#   benches/sync.sh [--accounts N] [--events N] [--batch-size N] [--pg URL]
#
# The project is tests/fixtures/sync (accounts with an unwound array of
# addresses, and orders in a second collection). A fresh nx-27017 (from the
# venv .ci/run makes) is seeded with N accounts (default 20000) and two
# orders each; `finlit-map run` takes the snapshot; then a writer makes
# --events changes (default 20000: a third inserts, a third updates, the
# rest replaces and deletes, both collections). Timed, each alone:
#   1. reading every change event from the server's change streams (pymongo,
#      aggregate + getMore): the server's own limit for events;
#   2. reading every changed document again by _id (pymongo, $in of 1000):
#      the server's limit for what sync reads besides the events;
#   3. `finlit-map sync --until-caught-up` (release build): events applied per second.
# Results go in docs/PERFORMANCE.md. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

accounts=20000
events=20000
batch=1000
pg="${FINLIT_BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
while [ $# -gt 0 ]; do
    case "$1" in
        --accounts) accounts="$2"; shift 2 ;;
        --events) events="$2"; shift 2 ;;
        --batch-size) batch="$2"; shift 2 ;;
        --pg) pg="$2"; shift 2 ;;
        -h|--help) sed -n 2,17p "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

py=.ci/venv/bin/python
nx=.ci/venv/bin/nx-27017
[ -x "$nx" ] || { echo "bench: $nx is missing (python3 -m venv .ci/venv && .ci/venv/bin/pip install nx-27017)" >&2; exit 1; }
echo "building (release)..." >&2
cargo build --release --quiet --bin finlit-map
tool=target/release/finlit-map
project=tests/fixtures/sync/mappings
work=$(mktemp -d /tmp/finlit-sync-bench.XXXXXX)
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
db="finlit_sync_bench_$$"
"$nx" --db "$work/nx.db" --port "$port" --log-file "$work/nx.log" --pid-file "$work/nx.pid" >/dev/null 2>&1 &
nxpid=$!
guard=""
cleanup() {
    [ -z "$guard" ] || kill "$guard" 2>/dev/null || true
    kill "$nxpid" 2>/dev/null || true
    psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
uri="mongodb://127.0.0.1:$port/finlit"
for _ in $(seq 100); do $py -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break; sleep 0.1; done

export URI="$uri" ACCOUNTS="$accounts" EVENTS="$events"
$py - <<'EOF'
import os, random, datetime
from bson import ObjectId
from pymongo import MongoClient
db = MongoClient(os.environ["URI"]).finlit
random.seed(1)
n = int(os.environ["ACCOUNTS"])
accs, orders = [], []
for i in range(n):
    a = {"_id": ObjectId(), "name": f"account {i}", "status": "open", "tier": random.choice(["gold", "silver"]),
         "tags": ["a", "b"], "addresses": [{"kind": k, "city": f"c{i}"} for k in ["home", "work"][: i % 3]]}
    accs.append(a)
    for _ in range(2):
        orders.append({"_id": ObjectId(), "account_id": a["_id"], "total": random.randrange(100000) / 100.0,
                       "placed_at": datetime.datetime(2024, 1, 1)})
for i in range(0, len(accs), 1000):
    db.accounts.insert_many(accs[i:i + 1000])
for i in range(0, len(orders), 1000):
    db.orders.insert_many(orders[i:i + 1000])
EOF
echo "seeded $accounts accounts, $((accounts * 2)) orders" >&2
"$tool" run "$project" --source "$uri" --target "$pg/$db" -q --rejects "$work/r.jsonl" --log-file "$work/m.log" >/dev/null
echo "snapshot taken" >&2

# nx-27017 keeps 1000 events of history per collection below the slowest
# open stream (streams close with their connection): a stream opened now
# and never read, its connection kept open, keeps every later event for the
# two readers below (the first would otherwise drop them for the second,
# and nx-27017 does not report a resume point it dropped).
$py - <<'EOF' &
import os, time
from pymongo import MongoClient
db = MongoClient(os.environ["URI"]).finlit
for c in ("accounts", "orders"):
    db.command({"aggregate": c, "pipeline": [{"$changeStream": {}}], "cursor": {"batchSize": 0}})
time.sleep(3600)
EOF
guard=$!
sleep 2

$py - <<'EOF'
import os, random, time
from bson import ObjectId
from pymongo import MongoClient
db = MongoClient(os.environ["URI"]).finlit
random.seed(2)
accs = [d["_id"] for d in db.accounts.find({}, {"_id": 1})]
orders = [d["_id"] for d in db.orders.find({}, {"_id": 1})]
t = time.time()
for i in range(int(os.environ["EVENTS"])):
    r = i % 6
    if r in (0, 1):
        a = {"_id": ObjectId(), "name": f"new {i}", "status": "open", "addresses": [{"kind": "home", "city": "x"}]}
        db.accounts.insert_one(a); accs.append(a["_id"])
    elif r == 2:
        db.accounts.update_one({"_id": random.choice(accs)}, {"$set": {"tier": f"t{i}", "addresses": [{"kind": "work", "city": f"y{i}"}]}})
    elif r == 3:
        db.orders.update_one({"_id": random.choice(orders)}, {"$set": {"total": i / 100.0}})
    elif r == 4:
        db.accounts.replace_one({"_id": random.choice(accs)}, {"name": f"replaced {i}", "status": "open", "tags": ["z"]})
    else:
        o = orders.pop(random.randrange(len(orders))); db.orders.delete_one({"_id": o})
print(f"writer: {os.environ['EVENTS']} changes in {time.time() - t:.1f} s")
EOF

START=$(psql "$pg/$db" -tAc "SELECT token FROM finlit_map.stream_start") $py - <<'EOF'
import os, time, json
from pymongo import MongoClient
db = MongoClient(os.environ["URI"]).finlit
t = time.time(); n = 0; ids = {"accounts": [], "orders": []}
start = json.loads(os.environ["START"])["collections"]
for c in ("accounts", "orders"):
    r = db.command({"aggregate": c, "pipeline": [{"$changeStream": {"resumeAfter": start[c]}}], "cursor": {"batchSize": 0}})
    cid = r["cursor"]["id"]
    while True:
        g = db.command({"getMore": cid, "collection": c, "batchSize": 1000})
        b = g["cursor"]["nextBatch"]
        if not b:
            break
        n += len(b)
        ids[c].extend(e["documentKey"]["_id"] for e in b if e["operationType"] != "delete")
events_s = time.time() - t
t = time.time(); docs = 0
for c, l in ids.items():
    for i in range(0, len(l), 1000):
        docs += len(list(db[c].find({"_id": {"$in": l[i:i + 1000]}})))
lookup_s = time.time() - t
print(f"server: {n} events read in {events_s:.2f} s ({n / events_s:.0f}/s); {docs} documents read again by _id in {lookup_s:.2f} s ({docs / max(lookup_s, 1e-9):.0f}/s)")
EOF

start=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$work/rss" "$tool" sync "$project" --source "$uri" --target "$pg/$db" --until-caught-up \
    --batch-size "$batch" --rejects "$work/r.jsonl" --log-file "$work/m.log" --format json >"$work/sync.json" 2>"$work/sync.err" \
    || { cat "$work/sync.err" >&2; exit 1; }
end=$(date +%s.%N)
applied=$($py -c "import json; print(json.load(open('$work/sync.json'))['events_applied'])")
secs=$(echo "$end - $start" | bc)
echo "sync: $applied events applied in ${secs} s ($(echo "$applied / $secs" | bc) events/s), batch $batch, peak RSS $(cat "$work/rss") KB"
