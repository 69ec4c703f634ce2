//! A mapping's `unwind`, checked: the path to an array or an object's
//! entries, the table form (`wrap_scalar`, `split`) and nested levels
//! (`["$.tiers.*", "@.benefits[*]"]`).
//!
//! Knows specs and paths; nothing of columns, the schema's types or sources.

use super::mapping::MappingCx;
use crate::lang::diag::{Code, Diagnostic};
use crate::lang::spec::{self, Sp};
use crate::plan::{InnerUnwind, UnwindShape};
use crate::value::path::{CompiledPath, Root};

impl MappingCx<'_> {
    /// The unwind path, and with `wrap_scalar`/`split` the one value it
    /// takes apart (written `$.tags` or `$.tags[*]`).
    pub(super) fn unwind(
        &mut self,
        u: &Sp<String>,
        shape: &spec::UnwindShapeSpec,
    ) -> Option<(CompiledPath, Option<UnwindShape>)> {
        let wrap_scalar = shape.wrap_scalar.as_ref().is_some_and(|w| w.value);
        if !wrap_scalar && shape.split.is_none() {
            return self.unwind_path(u).map(|p| (p, None));
        }
        let base_text = u.value.trim_end().strip_suffix("[*]").unwrap_or(u.value.trim_end());
        let base = self.path(&Sp::new(base_text.to_string(), u.span.clone()), false)?;
        if !base.is_simple() {
            self.diags.push(
                Diagnostic::error(
                    Code::InvalidJsonPath,
                    format!("with `wrap_scalar` or `split`, `path = \"{}\"` must name one value", u.value),
                )
                .at(self.file(), u.span.clone(), "not a plain path")
                .help("name the field that holds the array (or the single value), such as `$.tags`"),
            );
            return None;
        }
        if let Some(s) = shape.split.as_ref().filter(|s| s.value.is_empty()) {
            self.diags.push(
                Diagnostic::error(Code::InvalidValue, "`split` needs a separator")
                    .at(self.file(), s.span.clone(), "empty separator")
                    .help("write the text between the parts, such as `split = \",\"`"),
            );
            return None;
        }
        let each = self.path(&Sp::new(format!("{base_text}[*]"), u.span.clone()), false)?;
        Some((each, Some(UnwindShape { base, wrap_scalar, split: shape.split.as_ref().map(|s| s.value.clone()) })))
    }

    /// A nested level: a plain path from the element above, to an array
    /// (`@.benefits[*]`) or an object's entries (`@.tiers.*`).
    pub(super) fn inner_unwind(&mut self, u: &Sp<String>) -> Option<InnerUnwind> {
        let path = self.path(u, true)?;
        let entries = u
            .value
            .trim_end()
            .strip_suffix(".*")
            .and_then(|parent| CompiledPath::parse(parent).ok())
            .filter(|p| p.is_simple() && p.root() == Root::Element);
        let plain_each = path.fast_segments().is_some_and(|(_, each)| each);
        if path.root() != Root::Element || !(plain_each || entries.is_some()) {
            self.diags.push(
                Diagnostic::error(
                    Code::UnwindNotArray,
                    format!("a nested unwind level takes the element above apart; `{}` does not", u.value),
                )
                .at(self.file(), u.span.clone(), "not a plain `@` path to an array or an object's entries")
                .help(
                    "write `@.field[*]` (an array) or `@.field.*` (an object's entries); filter elements with `filter`",
                ),
            );
            return None;
        }
        Some(InnerUnwind { path, entries })
    }

    pub(super) fn unwind_path(&mut self, u: &Sp<String>) -> Option<CompiledPath> {
        let p = self.path(u, false)?;
        if p.is_multi() {
            return Some(p);
        }
        let help = if p.is_simple() && !u.value.trim_end().ends_with(']') {
            format!("did you mean `{}[*]`?", u.value.trim_end())
        } else {
            "end the path with `[*]` to take every element of an array".to_string()
        };
        self.diags.push(
            Diagnostic::error(
                Code::UnwindNotArray,
                format!("`unwind = \"{}\"` selects one value, not the elements of an array", u.value),
            )
            .at(self.file(), u.span.clone(), "cannot yield an array's elements")
            .help(help),
        );
        None
    }
}
