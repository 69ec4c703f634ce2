//! Passes over all mappings together: overlapping mappings into one table,
//! and the load order (stages) from the reference graph, with cycles
//! reported. (Each mapping's projection is the plan's own, `MappingPlan::projection`.)
//!
//! Knows specs and compiled plans; nothing of values or connections.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use crate::lang::diag::{Code, Diagnostic, Diagnostics, SourceFile};
use crate::lang::spec::{self, Literal, MappingSpec};
use crate::plan::MappingPlan;

/// Two mappings loading one table must not produce the same keys: the
/// second would silently overwrite the first's rows.
pub(super) fn check_overlaps(specs: &[MappingSpec], diags: &mut Diagnostics) {
    let mut by_table: HashMap<&str, Vec<&MappingSpec>> = HashMap::new();
    for s in specs {
        if let Some(t) = &s.table {
            by_table.entry(t.value.as_str()).or_default().push(s);
        }
    }
    let mut tables: Vec<_> = by_table.into_iter().filter(|(_, v)| v.len() > 1).collect();
    tables.sort_by_key(|(t, _)| *t);
    for (table, group) in tables {
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                if same_key_space(a, b) && !filters_disjoint(a, b) {
                    let ka = a.key.as_ref().map(|k| k.span.clone()).unwrap_or(0..0);
                    let kb = b.key.as_ref().map(|k| k.span.clone()).unwrap_or(0..0);
                    diags.push(
                        Diagnostic::error(
                            Code::OverlappingKeys,
                            format!("mappings `{}` and `{}` both load `{table}` with the same keys", a.name, b.name),
                        )
                        .at(&b.file, kb, "these keys")
                        .also(&a.file, ka, format!("overlap with `{}`", a.name))
                        .help("give the mappings disjoint filters (e.g. `equals` on a type field), or load one table from one mapping"),
                    );
                }
            }
        }
    }
}

/// Whether two mappings derive their key columns the same way from the same collection.
fn same_key_space(a: &MappingSpec, b: &MappingSpec) -> bool {
    let src = |m: &MappingSpec| m.source.as_ref().map(|s| s.value.clone());
    if src(a) != src(b) || a.unwind.as_ref().map(|u| &u.value) != b.unwind.as_ref().map(|u| &u.value) {
        return false;
    }
    // The expression and its argument, by value (spans differ); `None`: default only.
    fn derivation<'m>(m: &'m MappingSpec, col: &str) -> Option<Option<(&'m String, &'m Literal)>> {
        m.columns.iter().find(|c| c.name.value == col).map(|c| c.source.as_ref().map(|e| (&e.key.value, &e.arg.value)))
    }
    let Some(key) = &a.key else { return false };
    key.value.iter().all(|k| {
        let da = derivation(a, &k.value);
        da.is_some() && da == derivation(b, &k.value)
    })
}

/// Filters are disjoint when one condition on a path excludes every value
/// the other mapping's condition on the same path accepts.
fn filters_disjoint(a: &MappingSpec, b: &MappingSpec) -> bool {
    use spec::FilterTest as T;
    let accepted = |t: &T| -> Option<Vec<Literal>> {
        match t {
            T::Equals(l) => Some(vec![l.clone()]),
            T::In(ls) => Some(ls.clone()),
            _ => None,
        }
    };
    a.filter.iter().any(|fa| {
        b.filter.iter().filter(|fb| fb.path.value == fa.path.value).any(|fb| match (&fa.test.value, &fb.test.value) {
            (T::Exists(x), T::Exists(y)) => x != y,
            (ta, tb) => match (accepted(ta), accepted(tb)) {
                (Some(va), Some(vb)) => va.iter().all(|v| !vb.contains(v)),
                (Some(va), None) => match tb {
                    T::NotIn(ex) => va.iter().all(|v| ex.contains(v)),
                    T::NotEquals(ex) => va.iter().all(|v| v == ex),
                    _ => false,
                },
                (None, Some(vb)) => match ta {
                    T::NotIn(ex) => vb.iter().all(|v| ex.contains(v)),
                    T::NotEquals(ex) => vb.iter().all(|v| v == ex),
                    _ => false,
                },
                (None, None) => false,
            },
        })
    })
}

/// Orders mappings into stages (Kahn's algorithm, layer by layer); reports
/// every cycle with the references that form it.
pub(super) fn order(
    mappings: &[MappingPlan],
    edges: &[(usize, String, SourceFile, Range<usize>)],
    diags: &mut Diagnostics,
) -> Vec<Vec<usize>> {
    let n = mappings.len();
    // deps[i]: mappings that must load before mapping i.
    let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for (i, table, _, _) in edges {
        for (j, m) in mappings.iter().enumerate() {
            if &m.table == table && j != *i {
                deps[*i].insert(j);
            }
        }
    }
    let mut done = vec![false; n];
    let mut stages = Vec::new();
    loop {
        let ready: Vec<usize> = (0..n).filter(|&i| !done[i] && deps[i].iter().all(|&d| done[d])).collect();
        if ready.is_empty() {
            break;
        }
        for &i in &ready {
            done[i] = true;
        }
        stages.push(ready);
    }
    if done.iter().all(|d| *d) {
        return stages;
    }
    // What is left contains cycles: find each one by walking dependencies.
    let mut reported: BTreeSet<Vec<usize>> = BTreeSet::new();
    for start in (0..n).filter(|&i| !done[i]) {
        if let Some(cycle) = find_cycle(start, &deps, &done) {
            let mut canon = cycle.clone();
            canon.sort();
            if !reported.insert(canon) {
                continue;
            }
            let names: Vec<&str> = cycle.iter().chain(cycle.first()).map(|&i| mappings[i].name.as_str()).collect();
            let mut d = Diagnostic::error(Code::DependencyCycle, format!("dependency cycle: {}", names.join(" -> ")))
                .help("one of these references must go, or become a nullable self-reference of a single table");
            for w in cycle.windows(2).chain(std::iter::once(&[cycle[cycle.len() - 1], cycle[0]][..])) {
                let (from, to) = (w[0], w[1]);
                if let Some((_, t, f, s)) = edges.iter().find(|(i, t, _, _)| *i == from && *t == mappings[to].table) {
                    let label = format!("{} references {t}", mappings[from].name);
                    d = if d.primary.is_none() { d.at(f, s.clone(), label) } else { d.also(f, s.clone(), label) };
                }
            }
            diags.push(d);
        }
    }
    // Still give a usable order for what is not in a cycle.
    stages.push((0..n).filter(|&i| !done[i]).collect());
    stages
}

fn find_cycle(start: usize, deps: &[BTreeSet<usize>], done: &[bool]) -> Option<Vec<usize>> {
    let mut path = vec![start];
    let mut seen = vec![start];
    let mut cur = start;
    loop {
        let next = *deps[cur].iter().find(|&&d| !done[d])?;
        if let Some(pos) = path.iter().position(|&p| p == next) {
            return Some(path[pos..].to_vec());
        }
        if seen.contains(&next) {
            return None;
        }
        seen.push(next);
        path.push(next);
        cur = next;
    }
}
