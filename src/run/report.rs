//! What a run did, per mapping: the numbers a person needs to trust it
//! (`read = loaded + rejected + filtered`), as a table or as JSON.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ColumnReport {
    pub column: String,
    pub nulls: u64,
    pub defaults: u64,
}

/// What became of each source document. For `unwind` mappings rows are
/// array elements, so these say what happened to the documents themselves:
/// `documents = with_rows + filtered + rejected`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DocCounts {
    /// Documents that gave at least one row (some of their elements may be rejected).
    pub with_rows: u64,
    /// Documents that gave no row: the filter excluded them, or they had no elements.
    pub filtered: u64,
    /// Of the filtered, documents whose unwind array was missing, null or empty.
    pub without_elements: u64,
    /// Documents that gave no row because they, or all their elements, were rejected.
    pub rejected: u64,
    /// Documents whose every row repeated an earlier row's key (`on_duplicate`).
    pub duplicates: u64,
}

impl DocCounts {
    /// Classifies one document by what the mapper made of it.
    pub fn record(&mut self, rows: u64, rejected: u64, duplicates: u64, without_elements: bool) {
        if rows > 0 {
            self.with_rows += 1;
        } else if rejected > 0 {
            self.rejected += 1;
        } else if duplicates > 0 {
            self.duplicates += 1;
        } else {
            self.filtered += 1;
            if without_elements {
                self.without_elements += 1;
            }
        }
    }

    pub fn add(&mut self, o: &DocCounts) {
        self.with_rows += o.with_rows;
        self.filtered += o.filtered;
        self.without_elements += o.without_elements;
        self.rejected += o.rejected;
        self.duplicates += o.duplicates;
    }

    pub fn total(&self) -> u64 {
        self.with_rows + self.filtered + self.rejected + self.duplicates
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MappingReport {
    pub mapping: String,
    pub source: String,
    pub table: String,
    /// Source documents read.
    pub documents: u64,
    /// What became of those documents (`documents = with_rows + filtered + rejected`).
    pub document_outcomes: DocCounts,
    /// Candidate rows: documents, or array elements for `unwind` mappings.
    pub read: u64,
    /// Rows now in the table as the source says: inserted + updated + unchanged.
    pub loaded: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub filtered: u64,
    /// Rows not loaded because an earlier (`on_duplicate = "first"`) or a
    /// later (`"last"`) row has the same key: neither rejects nor lost.
    pub duplicates: u64,
    /// Rows loaded with a reference set to NULL because its row is not
    /// there (`on_missing = "null"`); they count as loaded.
    pub nulled: u64,
    /// Self-references whose parent does not exist (the row keeps NULL).
    pub dangling: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    /// Set when this run continued an interrupted one: where it picked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<String>,
    /// Per-column null and default counts (dry runs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnReport>,
}

impl MappingReport {
    /// Adds what another part of the same mapping did (a range, or a
    /// build's corrections): counts add up, the time is the longest part's.
    pub fn absorb(&mut self, o: &MappingReport) {
        self.documents += o.documents;
        self.document_outcomes.add(&o.document_outcomes);
        self.read += o.read;
        self.loaded += o.loaded;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.rejected += o.rejected;
        self.filtered += o.filtered;
        self.duplicates += o.duplicates;
        self.nulled += o.nulled;
        self.dangling += o.dangling;
        self.seconds = self.seconds.max(o.seconds);
        if self.columns.is_empty() {
            self.columns = o.columns.clone();
        }
    }

    /// What a build changed: rows it took out are rejects, no longer
    /// loaded; a document all of whose rows went counts as rejected.
    pub fn correct(&mut self, c: &Correction) {
        self.rejected += c.refused;
        self.loaded = self.loaded.saturating_sub(c.refused);
        self.inserted = self.inserted.saturating_sub(c.refused);
        self.document_outcomes.with_rows = self.document_outcomes.with_rows.saturating_sub(c.documents);
        self.document_outcomes.rejected += c.documents;
        self.nulled += c.nulled;
        self.dangling += c.dangling;
        self.seconds = self.seconds.max(c.seconds);
    }

    /// Both promises: every row and every document is accounted for.
    pub fn balanced(&self) -> bool {
        self.read == self.loaded + self.rejected + self.filtered + self.duplicates
            && self.documents == self.document_outcomes.total()
    }
}

/// What a table's build changed in one mapping's counts.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Correction {
    /// Rows it refused (rejects now, loaded before).
    pub refused: u64,
    /// Documents left with no row.
    pub documents: u64,
    /// Rows whose reference became NULL (`on_missing = "null"`).
    pub nulled: u64,
    /// Self-references pointing at nothing.
    pub dangling: u64,
    /// When the build ended, counted from the start of the load.
    pub seconds: f64,
}

/// A table's build after its first load: its keys, indexes and
/// constraints, and the rows they refused.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct BuildReport {
    pub table: String,
    pub objects: u64,
    pub refused: u64,
    pub seconds: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct RunReport {
    pub dry_run: bool,
    pub mappings: Vec<MappingReport>,
    pub rejects_file: Option<String>,
    /// This run's rejects (and warnings) by kind, most frequent first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reject_reasons: Vec<super::rejects::ReasonCount>,
    /// Mapped paths no document has, fields no mapping reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<super::coverage::Coverage>,
    /// Tables loaded before their keys, and their builds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub builds: Vec<BuildReport>,
    /// What `--prune` deleted (or left alone), per mapping.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<crate::validate::prune::Pruned>,
    pub seconds: f64,
}

impl RunReport {
    pub fn rejected(&self) -> u64 {
        self.mappings.iter().map(|m| m.rejected).sum()
    }

    pub fn render_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let w = self.mappings.iter().map(|m| m.mapping.len()).max().unwrap_or(7).max(7);
        // Fits 80 columns for mapping names up to 22 characters: the time
        // and rate of the whole run go on a line of their own.
        let _ = if self.dry_run {
            writeln!(out, "{:w$} {:>8} {:>10} {:>8} {:>8}", "mapping", "read", "would load", "rejected", "filtered")
        } else {
            writeln!(
                out,
                "{:w$} {:>7} {:>7} {:>6} {:>7} {:>6} {:>8} {:>8}",
                "mapping", "read", "loaded", "new", "changed", "same", "rejected", "filtered"
            )
        };
        let mut total = MappingReport { mapping: "total".into(), ..Default::default() };
        for m in &self.mappings {
            write_line(&mut out, m, w, self.dry_run);
            total.absorb(m);
        }
        total.seconds = self.seconds;
        total.rows_per_second = if self.seconds > 0.0 { total.loaded as f64 / self.seconds } else { 0.0 };
        write_line(&mut out, &total, w, self.dry_run);
        let _ = writeln!(out, "{} rows in {:.2} s ({:.0} rows/s)", total.loaded, total.seconds, total.rows_per_second);
        for m in self.mappings.iter().filter(|m| !m.balanced()) {
            let _ = writeln!(
                out,
                "warning: {}: read {} != loaded + rejected + filtered + duplicates, or documents {} != {} accounted for",
                m.mapping,
                m.read,
                m.documents,
                m.document_outcomes.total()
            );
        }
        // Unwind mappings count elements as rows; say what became of the documents.
        for m in self.mappings.iter().filter(|m| m.documents != m.read || m.document_outcomes.without_elements > 0) {
            let o = &m.document_outcomes;
            let empty = if o.without_elements > 0 {
                format!(" ({} without elements)", o.without_elements)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {}: documents {} = {} with rows + {} filtered{} + {} rejected",
                m.mapping, m.documents, o.with_rows, o.filtered, empty, o.rejected
            );
        }
        for m in self.mappings.iter().filter(|m| m.duplicates > 0) {
            let _ = writeln!(
                out,
                "  {}: {} rows repeated a key and were not loaded (on_duplicate keeps one row per key)",
                m.mapping, m.duplicates
            );
        }
        for m in self.mappings.iter().filter(|m| m.nulled > 0) {
            let _ = writeln!(
                out,
                "warning: {}: {} rows loaded with NULL for a reference whose row is not there (on_missing = \"null\"; see rejects)",
                m.mapping, m.nulled
            );
        }
        for m in self.mappings.iter().filter(|m| m.dangling > 0) {
            let _ = writeln!(
                out,
                "warning: {}: {} self-references point at rows that do not exist; those rows keep NULL (see rejects)",
                m.mapping, m.dangling
            );
        }
        if !self.builds.is_empty() {
            let objects: u64 = self.builds.iter().map(|b| b.objects).sum();
            let refused: u64 = self.builds.iter().map(|b| b.refused).sum();
            let slowest = self.builds.iter().map(|b| b.seconds).fold(0.0, f64::max);
            let _ = writeln!(
                out,
                "loaded {} tables before their keys: {objects} keys, indexes and constraints built after (longest {slowest:.2} s){}",
                self.builds.len(),
                if refused > 0 { format!(", {refused} rows refused by them (in the rejects)") } else { String::new() }
            );
        }
        if let Some(cov) = &self.coverage {
            out.push_str(&cov.render_text());
        }
        for p in &self.pruned {
            match &p.skipped {
                Some(why) => {
                    let _ = writeln!(out, "prune: {} left alone: {why}", p.mapping);
                }
                None if p.deleted > 0 => {
                    let _ = writeln!(
                        out,
                        "prune: {}: {} rows deleted from {} (the source no longer produces them)",
                        p.mapping, p.deleted, p.table
                    );
                }
                None => {}
            }
        }
        if !self.reject_reasons.is_empty() {
            let _ = writeln!(out, "rejects by reason (most frequent first; an example _id each):");
            for r in &self.reject_reasons {
                let column = r.column.as_deref().map(|c| format!("{c}: ")).unwrap_or_default();
                let kind = if r.warning { " (loaded, warning)" } else { "" };
                let _ = writeln!(
                    out,
                    "  {:>6} × {}: {column}{}{kind}  e.g. _id {}",
                    r.count, r.mapping, r.example, r.example_id
                );
            }
        }
        if self.dry_run {
            for m in &self.mappings {
                let cols: Vec<String> = m
                    .columns
                    .iter()
                    .filter(|c| c.nulls + c.defaults > 0)
                    .map(|c| format!("{} (null {}, default {})", c.column, c.nulls, c.defaults))
                    .collect();
                if !cols.is_empty() {
                    let _ = writeln!(out, "  {}: {}", m.mapping, cols.join(", "));
                }
            }
        }
        out
    }
}

fn write_line(out: &mut String, m: &MappingReport, w: usize, dry_run: bool) {
    let _ = if dry_run {
        writeln!(out, "{:w$} {:>8} {:>10} {:>8} {:>8}", m.mapping, m.read, m.loaded, m.rejected, m.filtered)
    } else {
        writeln!(
            out,
            "{:w$} {:>7} {:>7} {:>6} {:>7} {:>6} {:>8} {:>8}",
            m.mapping, m.read, m.loaded, m.inserted, m.updated, m.unchanged, m.rejected, m.filtered
        )
    };
}
