#!/usr/bin/env bash
# finlit-map against PostgreSQL's own COPY, on this machine, in one run.
#
#   benches/bench.sh [--learners N] [--full N] [--repeat N] [--batch-size N] [--pg URL] [--keep]
#
# Case 1: N learner documents shaped as the seed's (default 200000).
# Case 2: the full FinLit dataset of N learners, all 12 tables (default 20000;
#         0 skips it).
#
# For each case: a release build of finlit-map migrates the BSON dump into a
# fresh database whose schema is already applied (timed with /usr/bin/time -v:
# wall time and peak memory). The rows it produced are exported as CSV, and
# `psql \copy` loads them into the same tables of a second fresh database:
# PostgreSQL's own bulk load of already-transformed rows, the floor. Each
# side runs --repeat times (default 5), alternating, each into a fresh
# database after a CHECKPOINT; the script prints the medians, the ratio,
# rows per second and the peak memory.
# Results go in docs/PERFORMANCE.md. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

learners=200000
full=20000
repeat=5
batch=""
pg="${FINLIT_BENCH_PG:-postgres://postgres@127.0.0.1:5432}"
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --learners) learners="$2"; shift 2 ;;
        --full) full="$2"; shift 2 ;;
        --repeat) repeat="$2"; shift 2 ;;
        --batch-size) batch="--batch-size $2"; shift 2 ;;
        --pg) pg="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n 2,19p "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
command -v psql >/dev/null || { echo "bench: psql is missing" >&2; exit 1; }

echo "building (release)..." >&2
cargo build --release --quiet --bin finlit-map --example generate
tool=target/release/finlit-map
gen=target/release/examples/generate
work=$(mktemp -d /tmp/finlit-bench.XXXXXX)
stamp=$$
dbs=()
cleanup() {
    for db in "${dbs[@]}"; do psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true; done
    [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

fresh_db() { # name: a new database with the schema applied
    dbs+=("$1")
    psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS \"$1\"" >/dev/null
    "$tool" schema apply --target "$pg/$1" --schema schema >/dev/null
}

seconds() { python3 -c "print(f'{float(\"$1\"):.2f}')"; }

# case NAME DUMP_DIR TABLES...: tool vs floor for these tables, in load order.
bench_case() {
    local name=$1 dump=$2; shift 2
    local tables=("$@")
    local only=()
    [ "$name" = learners ] && only=(--collection learners)
    local tool_times=() floor_times=() rss=() rows=0
    for i in $(seq 1 "$repeat"); do
        local tool_db="fm_bench_tool_${stamp}_${name}_$i" floor_db="fm_bench_floor_${stamp}_${name}_$i"
        fresh_db "$tool_db"
        fresh_db "$floor_db"

        psql "$pg/postgres" -qc "CHECKPOINT" >/dev/null
        echo "[$name $i/$repeat] finlit-map run..." >&2
        (cd "$work" && /usr/bin/time -v "$OLDPWD/$tool" run "$OLDPWD/mappings" --source "$dump" \
            --target "$pg/$tool_db" --no-schema --format json $batch "${only[@]}" \
            > "$work/$name.report.json" 2> "$work/$name.time.txt") || {
            echo "finlit-map run failed:" >&2; tail -20 "$work/$name.time.txt" >&2; exit 1; }
        tool_times+=("$(python3 -c "import re; t=open('$work/$name.time.txt').read(); m=re.search(r'Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)', t); h,mn,s=m.groups(); print((int(h or 0)*3600)+int(mn)*60+float(s))")")
        rss+=("$(grep "Maximum resident set size" "$work/$name.time.txt" | awk '{print $NF}')")
        rows=$(python3 -c "import json; r=json.load(open('$work/$name.report.json')); print(sum(m['loaded'] for m in r['mappings']))")

        if [ "$i" = 1 ]; then
            # The same rows, already transformed, as CSV.
            for t in "${tables[@]}"; do psql "$pg/$tool_db" -qc "\\copy $t TO '$work/$name.$t.csv' CSV"; done
            : > "$work/$name.floor.sql"
            for t in "${tables[@]}"; do echo "\\copy $t FROM '$work/$name.$t.csv' CSV" >> "$work/$name.floor.sql"; done
        fi
        psql "$pg/postgres" -qc "CHECKPOINT" >/dev/null
        echo "[$name $i/$repeat] psql \\copy (the floor)..." >&2
        /usr/bin/time -f "%e" -o "$work/$name.floor.time" psql "$pg/$floor_db" -q -v ON_ERROR_STOP=1 -f "$work/$name.floor.sql"
        floor_times+=("$(cat "$work/$name.floor.time")")
        for db in "$tool_db" "$floor_db"; do psql "$pg/postgres" -qc "DROP DATABASE \"$db\"" >/dev/null; done
    done
    python3 - "$name" "$rows" "${tool_times[*]}" "${floor_times[*]}" "${rss[*]}" <<'PY'
import sys, statistics
name, rows = sys.argv[1], int(sys.argv[2])
tool = [float(x) for x in sys.argv[3].split()]
floor = [float(x) for x in sys.argv[4].split()]
rss = max(int(x) for x in sys.argv[5].split())
t, f = statistics.median(tool), statistics.median(floor)
print(f"{name:10} rows {rows:>9}  finlit-map {t:6.2f} s ({rows/t:>8.0f} rows/s)  "
      f"psql \\copy {f:6.2f} s ({rows/f:>8.0f} rows/s)  ratio {t/f:4.2f}  peak RSS {rss/1024:5.1f} MB")
print(f"{'':10} runs: finlit-map {' '.join(f'{x:.2f}' for x in tool)}  floor {' '.join(f'{x:.2f}' for x in floor)}")
PY
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(psql "$pg/postgres" -Atc 'SHOW server_version'), $(date -u +%Y-%m-%d)"
if [ "$learners" -gt 0 ]; then
    echo "generating $learners learners..." >&2
    "$gen" --learners "$learners" --only learners --out "$work/learners-dump" 2>/dev/null
    bench_case learners "$work/learners-dump" learners
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
    bench_case full "$work/full-dump" "${order[@]}"
fi
