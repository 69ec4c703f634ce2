//! Which row of a repeated key a mapping keeps (`on_duplicate`): all of
//! them (the database, or a dry run, rejects the repeats), the first, or
//! the last. "last" needs a first pass over the source, fed document by
//! document by the caller, that numbers the rows and remembers each key's
//! last one; the second pass keeps exactly those. The same rows are kept by
//! `run`, `run --dry-run` and `validate`.

use std::collections::{HashMap, HashSet};

use bson::RawDocument;

use super::{RowEvent, RowMapper};
use crate::plan::{MappingPlan, OnDuplicate};
use crate::value::cell::Cell;

pub struct Keep<'p> {
    plan: &'p MappingPlan,
    rule: Rule,
    /// The first pass's own mapper, made once.
    mapper: Option<RowMapper<'p>>,
}

enum Rule {
    All,
    /// The key identities seen so far.
    First(HashSet<Vec<String>>),
    /// Each key's last row number, from the first pass (which numbered
    /// `first` rows); `row` numbers the second pass's rows.
    Last {
        last: HashMap<Vec<String>, u64>,
        first: u64,
        row: u64,
    },
}

impl<'p> Keep<'p> {
    pub fn new(plan: &'p MappingPlan) -> Keep<'p> {
        let rule = match plan.on_duplicate {
            OnDuplicate::Reject => Rule::All,
            OnDuplicate::First => Rule::First(HashSet::new()),
            OnDuplicate::Last => Rule::Last { last: HashMap::new(), first: 0, row: 0 },
        };
        Keep { plan, rule, mapper: None }
    }

    /// Whether the caller must feed every document to [`Keep::first_pass`]
    /// before asking [`Keep::keeps`].
    pub fn needs_first_pass(&self) -> bool {
        matches!(self.rule, Rule::Last { .. })
    }

    /// One document of the first pass, in source order.
    pub fn first_pass(&mut self, doc: &RawDocument) {
        let Rule::Last { last, first, .. } = &mut self.rule else { return };
        let key = &self.plan.key;
        let plan = self.plan;
        self.mapper.get_or_insert_with(|| RowMapper::new(plan)).map(doc, |ev| {
            if let RowEvent::Row { cells, .. } = ev {
                *first += 1;
                if let Some(k) = identity(key, &cells) {
                    last.insert(k, *first);
                }
            }
        });
    }

    /// Whether the next row the mapper gave is kept. A row with a NULL key
    /// part repeats nothing and is kept.
    pub fn keeps(&mut self, cells: &[Cell<'_>]) -> bool {
        let key = &self.plan.key;
        match &mut self.rule {
            Rule::All => true,
            Rule::First(seen) => identity(key, cells).is_none_or(|k| seen.insert(k)),
            Rule::Last { last, row, .. } => {
                *row += 1;
                // A key the first pass did not see (a live source changed
                // between the passes) is kept, never lost.
                identity(key, cells).is_none_or(|k| last.get(&k).is_none_or(|&n| n == *row))
            }
        }
    }
}

/// The key's values by PostgreSQL's equality (`Cell::identity`); `None`
/// when a part is NULL.
fn identity(key: &[usize], cells: &[Cell<'_>]) -> Option<Vec<String>> {
    key.iter().map(|&i| cells[i].identity()).collect()
}
