//! Specs + schema → `Plan`, collecting every diagnostic on the way.
//!
//! This is where the mapping language meets the target schema: paths are
//! compiled, columns resolved to typed schema columns, defaults and `map`
//! values coerced ahead of time, references turned into a dependency graph
//! and the graph into stages. Nothing returns at the first problem: `check`
//! prints all of them.
//!
//! Knows specs and the schema; nothing of sources, sinks or connections.

pub mod graph;
pub mod json_schema;
pub mod mapping;
pub mod options;
pub mod references;
pub mod unwind;

use graph::{check_overlaps, order};
use mapping::MappingCx;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;

use crate::lang::diag::{Code, Diagnostic, Diagnostics, SourceFile, did_you_mean};
use crate::lang::spec::{self, JsonSpec, MappingSpec, ProjectSpec, Sp};
use crate::plan::{MappingPlan, Plan};
use crate::schema::Schema;
use crate::value::coerce::CoerceRules;
use crate::value::ids::IdNamespace;
use crate::value::json::{DateForm, JsonForm, ObjectIdForm};

/// What `check` and every command start from: the mapping directory read,
/// the schema read, both compiled.
pub struct Compiled {
    pub plan: Option<Plan>,
    pub diagnostics: Diagnostics,
}

/// Loads and compiles a mapping directory. `schema_dir` overrides the
/// project file's `schema` (default: `../schema` beside the mapping dir, then `schema/`).
pub fn compile_dir(dir: &Path, schema_dir: Option<&Path>) -> Compiled {
    let mut diags = Diagnostics::default();
    let (project, specs) = spec::load_dir(dir, &mut diags);
    let schema_dir = schema_dir.map(Path::to_path_buf).unwrap_or_else(|| resolve_schema_dir(dir, &project));
    let schema = Schema::load_dir(&schema_dir, &mut diags);
    let plan = compile(&project, &specs, schema, schema_dir, &mut diags);
    diags.sort();
    let plan = if diags.has_errors() { None } else { Some(plan) };
    Compiled { plan, diagnostics: diags }
}

/// The schema directory of a mapping directory, as `compile_dir` finds it
/// (for commands that read only the schema).
pub fn schema_dir_of(dir: &Path) -> PathBuf {
    let mut diags = Diagnostics::default();
    let project = match std::fs::read_to_string(dir.join(spec::PROJECT_FILE)) {
        Ok(text) => {
            spec::parse_project(&SourceFile::new(dir.join(spec::PROJECT_FILE), text), &mut diags).unwrap_or_default()
        }
        Err(_) => ProjectSpec::default(),
    };
    resolve_schema_dir(dir, &project)
}

fn resolve_schema_dir(dir: &Path, project: &ProjectSpec) -> PathBuf {
    if let Some(s) = &project.schema {
        return dir.join(&s.value);
    }
    let beside = dir.join("..").join("schema");
    if beside.is_dir() { beside } else { PathBuf::from("schema") }
}

/// Compiles parsed specs against a schema. The plan is complete only when
/// `diags` holds no error.
pub fn compile(
    project: &ProjectSpec,
    specs: &[MappingSpec],
    schema: Schema,
    schema_dir: PathBuf,
    diags: &mut Diagnostics,
) -> Plan {
    let defaults = ProjectDefaults::new(project, diags);
    let loaded: BTreeMap<&str, Vec<&MappingSpec>> = specs.iter().fold(BTreeMap::new(), |mut m, s| {
        if let Some(t) = &s.table {
            m.entry(t.value.as_str()).or_default().push(s);
        }
        m
    });
    let mut mappings = Vec::new();
    // (mapping index, referenced table, span of the reference) for cycle messages.
    let mut edges: Vec<(usize, String, SourceFile, Range<usize>)> = Vec::new();
    for spec in specs {
        let mut cx = MappingCx {
            spec,
            schema: &schema,
            loaded: &loaded,
            defaults: &defaults,
            diags,
            edges: Vec::new(),
            entries: Vec::new(),
        };
        if let Some(m) = cx.compile() {
            let idx = mappings.len();
            edges.extend(cx.edges.into_iter().map(|(t, f, s)| (idx, t, f, s)));
            mappings.push(m);
        }
    }
    check_overlaps(specs, diags);
    let stages = order(&mappings, &edges, diags);
    // Reorder mappings stage by stage so `mappings` is in load order.
    let mut ordered = Vec::with_capacity(mappings.len());
    let mut new_stages = Vec::new();
    let mut slots: Vec<Option<MappingPlan>> = mappings.into_iter().map(Some).collect();
    for stage in stages {
        let mut s = Vec::new();
        for i in stage {
            if let Some(m) = slots[i].take() {
                s.push(ordered.len());
                ordered.push(m);
            }
        }
        new_stages.push(s);
    }
    Plan { mappings: ordered, stages: new_stages, schema, schema_dir, namespace: defaults.rules.ns }
}

pub(super) struct ProjectDefaults {
    rules: CoerceRules,
}

impl ProjectDefaults {
    fn new(p: &ProjectSpec, diags: &mut Diagnostics) -> Self {
        let mut rules = CoerceRules::default();
        if let (Some(ns), Some(file)) = (&p.namespace, &p.file) {
            match uuid::Uuid::parse_str(&ns.value) {
                Ok(u) => rules.ns = IdNamespace(u),
                Err(e) => diags.push(
                    Diagnostic::error(Code::InvalidValue, "the id namespace is not a UUID")
                        .at(file, ns.span.clone(), e.to_string())
                        .help("generate one with `uuidgen` and keep it forever: it fixes every derived id"),
                ),
            }
        }
        if let Some(file) = &p.file {
            if let Some(tz) = parse_tz(&p.time_zone, file, diags) {
                rules.tz = tz;
            }
            rules.json = json_form(&p.json, rules.json, file, diags);
        }
        ProjectDefaults { rules }
    }
}

pub(super) fn parse_tz(tz: &Option<Sp<String>>, file: &SourceFile, diags: &mut Diagnostics) -> Option<Tz> {
    let tz = tz.as_ref()?;
    match tz.value.parse::<Tz>() {
        Ok(t) => Some(t),
        Err(_) => {
            let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
            let mut d = Diagnostic::error(Code::InvalidValue, format!("unknown time zone `{}`", tz.value)).at(
                file,
                tz.span.clone(),
                "not an IANA time zone",
            );
            if let Some(s) = did_you_mean(&tz.value, names) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            diags.push(d);
            None
        }
    }
}

pub(super) fn json_form(j: &JsonSpec, base: JsonForm, file: &SourceFile, diags: &mut Diagnostics) -> JsonForm {
    let mut form = base;
    if let Some(o) = &j.object_ids {
        match ObjectIdForm::parse(&o.value) {
            Some(f) => form.object_ids = f,
            None => diags.push(bad_choice(file, o, "object_ids form", ObjectIdForm::NAMES)),
        }
    }
    if let Some(d) = &j.dates {
        match DateForm::parse(&d.value) {
            Some(f) => form.dates = f,
            None => diags.push(bad_choice(file, d, "dates form", DateForm::NAMES)),
        }
    }
    form
}

pub(super) fn bad_choice(file: &SourceFile, v: &Sp<String>, what: &str, names: &[&str]) -> Diagnostic {
    let d = Diagnostic::error(Code::InvalidValue, format!("unknown {what} `{}`", v.value)).at(
        file,
        v.span.clone(),
        format!("one of: {}", names.join(", ")),
    );
    match did_you_mean(&v.value, names.iter().copied()) {
        Some(s) => d.help(format!("did you mean `{s}`?")),
        None => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn shipped_mappings_compile_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = compile_dir(&root.join("mappings"), Some(&root.join("schema")));
        assert!(c.diagnostics.is_empty(), "{}", c.diagnostics.render_text(false));
        let plan = c.plan.unwrap();
        assert!(plan.stages.len() >= 2);
        // Every mapping loads after everything it references.
        let mut loaded = BTreeSet::new();
        for stage in &plan.stages {
            for &i in stage {
                for d in &plan.mappings[i].depends_on {
                    assert!(loaded.contains(d.as_str()), "{} before {d}", plan.mappings[i].name);
                }
            }
            for &i in stage {
                loaded.insert(plan.mappings[i].table.as_str());
            }
        }
    }
}
