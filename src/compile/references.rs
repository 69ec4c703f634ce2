//! `references` on a column: the referenced table and key (its primary key,
//! the schema's foreign key, or a natural key `"table.column"`), checked
//! against the schema and against how the referenced table's mapping fills
//! that key; each reference is an edge of the load order.
//!
//! Knows specs and the schema; nothing of sources or connections.

use super::mapping::MappingCx;
use crate::lang::diag::{Code, Diagnostic, did_you_mean};
use crate::lang::expr::ExprRef;
use crate::lang::spec::ColumnSpec;
use crate::schema::{SqlType, Table};

impl MappingCx<'_> {
    /// Resolves `references` ("table", or "table.column" for a natural
    /// key) against the schema's foreign keys and the set of loaded tables;
    /// records the dependency edge. Returns the referenced table and column.
    pub(super) fn references(
        &mut self,
        c: &ColumnSpec,
        table: &Table,
        col: &crate::schema::Column,
        value: &ExprRef,
    ) -> Option<(String, String)> {
        let file = self.spec.file.clone();
        let fk = table.foreign_key_on(&col.name);
        let declared = c.references.as_ref();
        if declared.is_none() && fk.is_none() {
            return None;
        }
        if value.is_default_only() {
            if let Some(r) = declared {
                self.diags.push(
                    Diagnostic::error(Code::ForeignKeyWithoutId, format!("`references` on `{}` needs a value", col.name))
                        .at(&file, r.span.clone(), "no `from` or `id`")
                        .help("a reference holds the key of the row it points at: `id = \"$.path\"` for a derived UUID, `from = \"$.path\"` for a natural key"),
                );
            }
            return None;
        }
        // The referenced table and (maybe) column, as declared.
        let (decl_table, decl_column) = match declared {
            Some(r) => match r.value.split_once('.') {
                Some((t, c)) => (Some(t.to_string()), Some(c.to_string())),
                None => (Some(r.value.clone()), None),
            },
            None => (None, None),
        };
        let target = match (&decl_table, fk) {
            (Some(t), Some(fk)) if *t != fk.ref_table => {
                let r = declared?;
                self.diags.push(
                    Diagnostic::error(
                        Code::ReferenceMismatch,
                        format!(
                            "`{}` references `{}`, but the schema's foreign key points at `{}`",
                            col.name, t, fk.ref_table
                        ),
                    )
                    .at(&file, r.span.clone(), format!("says `{t}`"))
                    .also(&fk.file, fk.span.clone(), format!("foreign key to `{}`", fk.ref_table)),
                );
                return None;
            }
            (Some(t), _) => (t.clone(), declared?.span.clone()),
            (None, Some(fk)) => (fk.ref_table.clone(), c.span.clone()),
            (None, None) => return None,
        };
        let Some(ref_table) = self.schema.table(&target.0) else {
            let mut d = Diagnostic::error(
                Code::UnknownTable,
                format!("`references = \"{}\"`: no such table in the schema", target.0),
            )
            .at(&file, target.1.clone(), "unknown table");
            if let Some(s) = did_you_mean(&target.0, self.schema.tables.keys().map(String::as_str)) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            self.diags.push(d);
            return None;
        };
        // The referenced column: declared, else the foreign key's, else the primary key.
        let fk_column = fk.filter(|fk| fk.ref_table == target.0).and_then(|fk| fk.ref_columns.first().cloned());
        let ref_column = decl_column.clone().or(fk_column.clone()).or_else(|| match ref_table.primary_key.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        });
        let Some(ref_column) = ref_column else {
            self.diags.push(
                Diagnostic::error(
                    Code::ReferenceMismatch,
                    format!("`{}` references `{}`, which has no single-column key", col.name, target.0),
                )
                .at(&file, target.1.clone(), "which column?")
                .help(format!("name the column: `references = \"{}.column\"`", target.0)),
            );
            return None;
        };
        if let (Some(d), Some(f)) = (&decl_column, &fk_column)
            && d != f
        {
            self.diags.push(
                Diagnostic::error(
                    Code::ReferenceMismatch,
                    format!(
                        "`{}` references `{}.{d}`, but the schema's foreign key points at `{}.{f}`",
                        col.name, target.0, target.0
                    ),
                )
                .at(&file, target.1.clone(), format!("says `{d}`")),
            );
            return None;
        }
        let Some(ref_col) = ref_table.column(&ref_column) else {
            self.diags.push(
                Diagnostic::error(Code::UnknownColumn, format!("`{}` has no column `{ref_column}`", target.0)).at(
                    &file,
                    target.1.clone(),
                    "unknown column",
                ),
            );
            return None;
        };
        if !ref_table.is_unique_key(&[ref_column.as_str()]) {
            self.diags.push(
                Diagnostic::error(
                    Code::ReferenceMismatch,
                    format!(
                        "`{}.{ref_column}` is neither the primary key nor UNIQUE, so it cannot be referenced",
                        target.0
                    ),
                )
                .at(&file, target.1.clone(), "not a key")
                .also(&ref_table.file, ref_col.span.clone(), "declared here")
                .help("reference the table's primary key or a UNIQUE column"),
            );
            return None;
        }
        // Values must match the referenced key as its own mapping fills it:
        // a derived id with `id`, a natural key with the same type.
        // (With no mapping loading the table, a uuid key is taken to be derived.)
        let derived = match self.loaded.get(target.0.as_str()) {
            Some(ms) => ms.iter().any(|m| {
                m.columns.iter().any(|mc| {
                    mc.name.value == ref_column
                        && mc.source.as_ref().is_some_and(|e| e.key.value == crate::lang::expr::id::KIND.key)
                })
            }),
            None => ref_col.ty == SqlType::Uuid,
        };
        if !value.is_id() && derived {
            let p = value.paths().first().map(|p| p.text().to_string()).unwrap_or_default();
            let (at, also) = match fk {
                Some(fk) => (c.span.clone(), Some((fk.file.clone(), fk.span.clone()))),
                None => (target.1.clone(), None),
            };
            let mut d = Diagnostic::error(
                Code::ForeignKeyWithoutId,
                format!(
                    "`{}` is a foreign key to `{}`, but the mapping copies `{p}` instead of deriving its id",
                    col.name, target.0
                ),
            )
            .at(&file, at, "filled without `id`");
            if let Some((f, span)) = also {
                d = d.also(&f, span, "foreign key declared here");
            }
            self.diags.push(d.help(format!(
                "write `{} = {{ id = \"{p}\", references = \"{}\" }}` so it matches the UUID of the row it points at",
                col.name, target.0
            )));
            return None;
        }
        if value.is_id() && ref_col.ty != SqlType::Uuid {
            self.diags.push(
                Diagnostic::error(
                    Code::TypeMismatch,
                    format!("`id` derives a UUID, but `{}.{ref_column}` is {}", target.0, ref_col.ty),
                )
                .at(&file, target.1.clone(), "a natural key")
                .help(format!("use `from` to copy the natural key into `{}`", col.name)),
            );
            return None;
        }
        if !value.is_id() && ref_col.ty != col.ty {
            self.diags.push(
                Diagnostic::error(
                    Code::TypeMismatch,
                    format!(
                        "`{}` is {}, but the key it references, `{}.{ref_column}`, is {}",
                        col.name, col.ty, target.0, ref_col.ty
                    ),
                )
                .at(&file, target.1.clone(), "types differ")
                .also(&ref_table.file, ref_col.span.clone(), format!("declared {}", ref_col.ty))
                .help("a reference and its key must have the same type"),
            );
            return None;
        }
        if !self.loaded.contains_key(target.0.as_str()) {
            self.diags.push(
                Diagnostic::error(
                    Code::ReferenceNotLoaded,
                    format!("`{}` references `{}`, which no mapping loads", col.name, target.0),
                )
                .at(&file, target.1.clone(), format!("no mapping has `table = \"{}\"`", target.0))
                .help(format!("add a mapping for `{}`, or drop the reference", target.0)),
            );
            return None;
        }
        if target.0 == table.name && col.not_null {
            self.diags.push(
                Diagnostic::error(
                    Code::TypeMismatch,
                    format!("self-reference `{}` is NOT NULL, so a child cannot load before its parent", col.name),
                )
                .at(&file, target.1.clone(), "self-reference")
                .also(&table.file, col.span.clone(), "NOT NULL here")
                .help("self-references are set in a second pass and must be nullable"),
            );
        }
        if target.0 != table.name {
            self.edges.push((target.0.clone(), file, target.1));
        }
        Some((target.0, ref_column))
    }
}
