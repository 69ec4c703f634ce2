#!/usr/bin/env bash
# finlit-map against PostgreSQL's own bulk loads and against the tools users
# would otherwise pick, on this machine, in one run.
#
#   benches/bench.sh [--learners N] [--full N] [--live N] [--repeat N] [--jobs "1 2"]
#                    [--cores "1 2"] [--batch-size N] [--no-python] [--baseline BIN]
#                    [--pg URL] [--keep]
#
# Cases (each 0 skips it):
#   --learners N  N learner documents shaped as the platform's (default 200000)
#   --full N      the whole FinLit dataset of N learners, 13 tables (default 20000)
#   --live N      N learners in a live server (nx-27017), read by each reader (default 200000)
#
# Sides of a file case, alternating, --repeat times (default 5), each into a
# fresh database after a CHECKPOINT, the schema already applied:
#   finlit-map     `run --fast-first-load` (a first load: rows before keys),
#                  once per --jobs value (default: the number of cores)
#   baseline       (with --baseline BIN) the same first load by another
#                  finlit-map binary, e.g. one built from an earlier commit:
#                  before and after a change, side by side
#   finlit-map idx `run --no-fast-first-load` (into the indexed tables)
#   \copy floor    the rows finlit-map produced, as CSV, loaded by `psql \copy`
#                  into the indexed tables
#   true floor     the same rows in PostgreSQL's binary COPY format loaded into
#                  the tables without keys, indexes or foreign keys, then those
#                  built (pg_dump's pre-data, COPY, post-data: what pg_restore does)
#   psycopg        (learners only) benches/python/learners_copy.py: pymongo's BSON
#                  decoder, the mapping by hand, psycopg 3 COPY into the indexed table
#   dlt            (learners only) benches/python/learners_dlt.py: a dlt pipeline
#                  with its defaults into an empty database
# --cores "1 2": the file cases once per number of cores, each with
# PostgreSQL's processes and every side pinned to that many cores (taskset;
# PostgreSQL on this machine, and the right to set its processes' affinity),
# finlit-map with as many --jobs unless --jobs is given:
# how throughput grows with cores, floors included, on one machine (the
# Python sides run only when nothing is pinned). Without it nothing is pinned.
# Sides of the live case, alternating, --repeat times (at most 3):
#   plain scan     pymongo reading the collection sorted by _id (the server's own limit)
#   ingestr        ingestr 1.1.22 into an empty database
#   finlit-map     `run --source mongodb://… --fast-first-load`
#
# It prints every time, the medians, rows per second, the ratios to both
# floors, and the peak memory (RSS) and CPU time (user + system, median) of
# each process. The Python sides run in venvs it makes under benches/ (pip
# install; needs the network once). Results go in docs/PERFORMANCE.md. Not
# part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

learners=200000
full=20000
live=200000
repeat=5
jobs="$(nproc)"
cores=""
cpus=""
jobs_given=""
batch=""
baseline=""
python=1
pg="${FINLIT_BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --learners) learners="$2"; shift 2 ;;
        --full) full="$2"; shift 2 ;;
        --live) live="$2"; shift 2 ;;
        --repeat) repeat="$2"; shift 2 ;;
        --jobs) jobs="$2"; jobs_given=1; shift 2 ;;
        --cores) cores="$2"; shift 2 ;;
        --batch-size) batch="--batch-size $2"; shift 2 ;;
        --no-python) python=0; shift ;;
        --baseline) baseline="$(realpath "$2")"; shift 2 ;;
        --pg) pg="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n 2,46p "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
command -v psql >/dev/null || { echo "bench: psql is missing" >&2; exit 1; }
command -v pg_dump >/dev/null || { echo "bench: pg_dump is missing" >&2; exit 1; }

echo "building (release)..." >&2
cargo build --release --quiet --bin finlit-map --example generate
target=$(realpath "${CARGO_TARGET_DIR:-target}")
tool=$target/release/finlit-map
gen=$target/release/examples/generate
work=$(mktemp -d /tmp/finlit-bench.XXXXXX)
stamp=$$
dbs=()
nx_pid=""
cleanup() {
    [ -n "$nx_pid" ] && kill "$nx_pid" 2>/dev/null || true
    for db in "${dbs[@]}"; do psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true; done
    [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

venv() { # dir packages...: a venv with these packages, made once
    local dir=$1; shift
    if [ ! -x "$dir/bin/python" ]; then
        echo "making $dir ($*)..." >&2
        python3 -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    fi
}
if [ "$python" = 1 ] && { [ "$learners" -gt 0 ] || [ "$live" -gt 0 ]; }; then
    venv benches/.venv pymongo "psycopg[binary]" "dlt[postgres]"
fi
if [ "$live" -gt 0 ]; then
    venv benches/.venv pymongo "psycopg[binary]" "dlt[postgres]"
    venv benches/.venv-ingestr "ingestr==1.1.22"
fi
py=$PWD/benches/.venv/bin/python

new_db() { # name: a new empty database
    dbs+=("$1")
    psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS \"$1\"" >/dev/null
    psql "$pg/postgres" -qc "CREATE DATABASE \"$1\"" >/dev/null
}
fresh_db() { # name [bin]: a new database with the schema applied (by bin, default this build)
    dbs+=("$1")
    psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS \"$1\"" >/dev/null
    "${2:-$tool}" schema apply --target "$pg/$1" --schema schema >/dev/null
}
drop_db() { psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null; }
checkpoint() { psql "$pg/postgres" -qc "CHECKPOINT" >/dev/null; }

# timed OUT CMD...: runs CMD under /usr/bin/time -v; appends "seconds rss_kb cpu_seconds" to OUT.times.
timed() {
    local out=$1; shift
    if ! /usr/bin/time -v -o "$out.time" ${cpus:+taskset -c "$cpus"} "$@" > "$out.stdout" 2> "$out.stderr"; then
        echo "failed: $*" >&2; tail -20 "$out.stderr" >&2; exit 1
    fi
    python3 - "$out.time" >> "$out.times" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
h, m, s = re.search(r'Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)', t).groups()
rss = re.search(r'Maximum resident set size \(kbytes\): (\d+)', t).group(1)
cpu = sum(float(re.search(rf'{k} time \(seconds\): ([\d.]+)', t).group(1)) for k in ('User', 'System'))
print(int(h or 0) * 3600 + int(m) * 60 + float(s), rss, f"{cpu:.2f}")
PY
}

# The schema in pg_dump's sections: tables alone, then keys, indexes and foreign keys.
fresh_db "fm_bench_schema_$stamp"
pg_dump -s --section=pre-data -N finlit_map "$pg/fm_bench_schema_$stamp" > "$work/pre-data.sql"
pg_dump -s --section=post-data -N finlit_map "$pg/fm_bench_schema_$stamp" > "$work/post-data.sql"
drop_db "fm_bench_schema_$stamp"

report() { # name rows side-files...: medians, ratios and memory of each side
    python3 - "$@" <<'PY'
import os, statistics, sys
name, rows, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
sides = {}
for f in files:
    label = os.path.basename(f).split('.', 1)[1].rsplit('.', 1)[0].replace('_', ' ')
    runs = [l.split() for l in open(f) if l.strip()]
    sides[label] = ([float(r[0]) for r in runs], max(int(r[1]) for r in runs), [float(r[2]) for r in runs if len(r) > 2])
copy = statistics.median(sides["copy floor"][0]) if "copy floor" in sides else None
true = statistics.median(sides["true floor"][0]) if "true floor" in sides else None
print(f"\n{name}: {rows} rows")
print("  " + "side".ljust(22) + "median".rjust(9) + "rows/s".rjust(10) + "/\\copy".rjust(9) + "/true".rjust(8) + "peak RSS".rjust(10) + "CPU".rjust(8) + "   runs")
for label, (times, rss, cpus) in sides.items():
    t = statistics.median(times)
    r1 = f"{t / copy:8.2f}" if copy else f"{'':8}"
    r2 = f"{t / true:7.2f}" if true else f"{'':7}"
    mem = f"{rss / 1024:7.1f}MB" if "floor" not in label else f"{'':9}"
    # CPU: user + system seconds of the measured process (for the floors, psql's own).
    cpu = f"{statistics.median(cpus):7.2f}s" if cpus and "floor" not in label else f"{'':8}"
    print(f"  {label:22} {t:7.2f}s {rows / t:9.0f} {r1} {r2} {mem} {cpu}   {' '.join(f'{x:.2f}' for x in times)}")
PY
}

# first_load BIN SIDE DB JOBS: a first load by BIN into DB, timed as SIDE
# (uses file_case's name, dump, out and sel).
first_load() {
    local bin=$1 side=$2 db=$3 j=$4
    # Each binary prepares its own database, as its users would (`schema
    # apply` also makes the ledger since 2026-12-06).
    fresh_db "$db" "$bin"; checkpoint
    echo "[$name $i/$repeat] $side..." >&2
    (cd "$work" && timed "$out.$side" "$bin" run "$OLDPWD/mappings" --source "$dump" --target "$pg/$db" \
        --no-schema --fast-first-load --jobs "$j" --format json $batch "${sel[@]}")
}

# file_case NAME DUMP_DIR ONLY TABLES...: every side, alternating, for these tables (load order).
file_case() {
    local name=$1 dump=$2 only=$3; shift 3
    local tables=("$@") sel=()
    [ -n "$only" ] && sel=(--collection "$only")
    local out="$work/$name" rows=0
    rm -f "$out".*.times
    for i in $(seq 1 "$repeat"); do
        for j in $jobs; do
            local db="fm_bench_${stamp}_${name}_j${j}_$i"
            first_load "$tool" "finlit-map_jobs_$j" "$db" "$j"
            rows=$(python3 -c "import json; r=json.load(open('$out.finlit-map_jobs_$j.stdout')); print(sum(m['loaded'] for m in r['mappings']))")
            if [ "$i" = 1 ] && [ ! -f "$out.rows.sql" ]; then
                # The same rows, already transformed, as CSV and as binary COPY.
                : > "$out.rows.sql"; : > "$out.csv.sql"
                for t in "${tables[@]}"; do
                    psql "$pg/$db" -qc "\\copy $t TO '$work/$name.$t.csv' CSV"
                    psql "$pg/$db" -qc "\\copy $t TO '$work/$name.$t.bin' (FORMAT binary)"
                    echo "\\copy $t FROM '$work/$name.$t.csv' CSV" >> "$out.csv.sql"
                    echo "\\copy $t FROM '$work/$name.$t.bin' (FORMAT binary)" >> "$out.rows.sql"
                done
                cat "$work/post-data.sql" >> "$out.rows.sql"
                psql "$pg/$db" -Atc "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM learners t" > "$out.learners.md5"
            fi
            drop_db "$db"
            if [ -n "$baseline" ]; then
                db="fm_bench_${stamp}_${name}_base_j${j}_$i"
                first_load "$baseline" "baseline_jobs_$j" "$db" "$j"
                drop_db "$db"
            fi
        done
        local db="fm_bench_${stamp}_${name}_idx_$i"
        fresh_db "$db"; checkpoint
        echo "[$name $i/$repeat] finlit-map into indexed tables..." >&2
        (cd "$work" && timed "$out.finlit-map_idx" "$tool" run "$OLDPWD/mappings" --source "$dump" --target "$pg/$db" \
            --no-schema --no-fast-first-load --format json $batch "${sel[@]}")
        drop_db "$db"

        db="fm_bench_${stamp}_${name}_copy_$i"
        fresh_db "$db"; checkpoint
        echo "[$name $i/$repeat] psql \\copy into indexed tables (the \\copy floor)..." >&2
        timed "$out.copy_floor" psql "$pg/$db" -q -v ON_ERROR_STOP=1 -f "$out.csv.sql"
        drop_db "$db"

        db="fm_bench_${stamp}_${name}_true_$i"
        new_db "$db"; psql "$pg/$db" -q -v ON_ERROR_STOP=1 -f "$work/pre-data.sql" >/dev/null; checkpoint
        echo "[$name $i/$repeat] binary COPY, then keys and constraints (the true floor)..." >&2
        timed "$out.true_floor" psql "$pg/$db" -q -v ON_ERROR_STOP=1 -f "$out.rows.sql"
        drop_db "$db"

        if [ "$name" = learners ] && [ "$python" = 1 ]; then
            db="fm_bench_${stamp}_${name}_py_$i"
            fresh_db "$db"; checkpoint
            echo "[$name $i/$repeat] psycopg 3 COPY script..." >&2
            timed "$out.psycopg" "$py" benches/python/learners_copy.py "$dump/learners.bson" "$pg/$db"
            psql "$pg/$db" -Atc "SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM learners t" > "$out.psycopg.md5"
            drop_db "$db"
            db="fm_bench_${stamp}_${name}_dlt_$i"
            new_db "$db"; checkpoint
            echo "[$name $i/$repeat] dlt pipeline..." >&2
            rm -rf "$work/dlt"; mkdir -p "$work/dlt"
            (cd "$work/dlt" && DLT_DATA_DIR="$work/dlt" timed "$out.dlt" "$py" "$OLDPWD/benches/python/learners_dlt.py" "$dump/learners.bson" "$pg/$db")
            drop_db "$db"
        fi
    done
    local files=()
    for j in $jobs; do
        files+=("$out.finlit-map_jobs_$j.times")
        [ -n "$baseline" ] && files+=("$out.baseline_jobs_$j.times")
    done
    files+=("$out.finlit-map_idx.times" "$out.copy_floor.times" "$out.true_floor.times")
    [ -f "$out.psycopg.times" ] && files+=("$out.psycopg.times" "$out.dlt.times")
    report "$name" "$rows" "${files[@]}"
    if [ -f "$out.psycopg.md5" ]; then
        if cmp -s "$out.psycopg.md5" "$out.learners.md5"; then
            echo "  the psycopg script's learners table equals finlit-map's (md5 of every row)"
        else
            echo "  the psycopg script's learners table DIFFERS from finlit-map's"
        fi
    fi
}

# pin N: PostgreSQL's processes (new backends inherit the postmaster's) and
# the timed sides on cores 0..N-1; `pin` alone: every core, nothing pinned.
pin() {
    local list="0-$(( ${1:-$(nproc)} - 1 ))"
    for p in $(pgrep -x postgres); do
        taskset -a -p -c "$list" "$p" >/dev/null || { echo "bench: cannot pin PostgreSQL's process $p (--cores needs the right to)" >&2; return 1; }
    done
    cpus=${1:+$list}
}
if [ -n "$cores" ]; then
    command -v taskset >/dev/null || { echo "bench: --cores needs taskset (util-linux)" >&2; exit 1; }
    trap 'pin || true; cleanup' EXIT
fi

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(psql "$pg/postgres" -Atc 'SHOW server_version'), $(date -u +%Y-%m-%d)"
if [ "$learners" -gt 0 ]; then
    echo "generating $learners learners..." >&2
    "$gen" --learners "$learners" --only learners --out "$work/learners-dump" 2>/dev/null
fi
if [ "$full" -gt 0 ]; then
    echo "generating the full dataset of $full learners..." >&2
    "$gen" --learners "$full" --out "$work/full-dump" 2>/dev/null
    mapfile -t order < <("$tool" plan mappings --format json | python3 -c "
import json, sys
p = json.load(sys.stdin)
seen = []
for stage in p['stages']:
    for name in stage:
        t = next(m['table'] for m in p['mappings'] if m['name'] == name)
        if t not in seen: seen.append(t)
print('\n'.join(seen))")
fi
for c in ${cores:-all}; do
    suffix=""
    if [ "$c" != all ]; then
        pin "$c" || exit 1
        suffix="_${c}_cores"
        [ -z "$jobs_given" ] && jobs=$c
        echo "PostgreSQL and every side on $c core(s) ($cpus)"
    fi
    [ "$learners" -gt 0 ] && file_case "learners$suffix" "$work/learners-dump" learners learners
    [ "$full" -gt 0 ] && file_case "full$suffix" "$work/full-dump" "" "${order[@]}"
done
[ -n "$cores" ] && pin

if [ "$live" -gt 0 ]; then
    nx="${FINLIT_NX27017:-$PWD/.ci/venv/bin/nx-27017}"
    if [ ! -x "$nx" ]; then
        python3 -m venv .ci/venv && .ci/venv/bin/pip install --quiet --disable-pip-version-check nx-27017
        nx=$PWD/.ci/venv/bin/nx-27017
    fi
    port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    "$nx" --db "$work/nx.db" --port "$port" --pid-file "$work/nx.pid" --log-file "$work/nx.log" >/dev/null 2>&1 &
    nx_pid=$!
    for _ in $(seq 1 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break; sleep 0.2; done
    uri="mongodb://127.0.0.1:$port/finlit"
    echo "generating $live learners and loading them into nx-27017 (this takes a while)..." >&2
    "$gen" --learners "$live" --only learners --out "$work/live-dump" 2>/dev/null
    "$py" - "$work/live-dump/learners.bson" "$uri" <<'PY'
import sys, bson
from bson.decimal128 import Decimal128
from pymongo import MongoClient
def plain(v):  # nx-27017 cannot store Decimal128: as double
    if isinstance(v, Decimal128): return float(v.to_decimal())
    if isinstance(v, dict): return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list): return [plain(x) for x in v]
    return v
coll = MongoClient(sys.argv[2]).get_default_database().learners
batch = []
with open(sys.argv[1], "rb") as f:
    for d in bson.decode_file_iter(f):
        batch.append(plain(d))
        if len(batch) == 5000:
            coll.insert_many(batch); batch = []
if batch: coll.insert_many(batch)
PY
    out="$work/live"
    rm -f "$out".*.times
    lr=$(( repeat < 3 ? repeat : 3 ))
    for i in $(seq 1 "$lr"); do
        echo "[live $i/$lr] plain pymongo scan..." >&2
        timed "$out.plain_scan" "$py" -c "
import sys
from pymongo import MongoClient
n = sum(1 for _ in MongoClient('$uri').get_default_database().learners.find({}).sort('_id', 1).batch_size(5000))
print(n)"
        db="fm_bench_${stamp}_live_ingestr_$i"
        new_db "$db"; checkpoint
        echo "[live $i/$lr] ingestr 1.1.22..." >&2
        (cd "$work" && timed "$out.ingestr" "$OLDPWD/benches/.venv-ingestr/bin/ingestr" ingest --source-uri "$uri" \
            --source-table finlit.learners --dest-uri "postgresql://${pg#*://}/$db" --dest-table public.learners --yes)
        drop_db "$db"
        db="fm_bench_${stamp}_live_fm_$i"
        fresh_db "$db"; checkpoint
        echo "[live $i/$lr] finlit-map from the live server..." >&2
        (cd "$work" && timed "$out.finlit-map" "$tool" run "$OLDPWD/mappings" --source "$uri" --target "$pg/$db" \
            --no-schema --fast-first-load --collection learners --format json $batch)
        drop_db "$db"
    done
    report live "$live" "$out.plain_scan.times" "$out.ingestr.times" "$out.finlit-map.times"
fi
