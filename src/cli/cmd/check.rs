//! `finlit-map check`: compile the mapping directory and print every
//! diagnostic; with `--source`, also what the data says of the mappings
//! (mapped paths no document has, fields no mapping reads).

use crate::cli::{CheckArgs, CheckFormat, Failure, Finished, Outcome};
use crate::compile::{Compiled, compile_dir};
use crate::run::coverage::{Coverage, coverage, scan};

pub fn run(args: &CheckArgs) -> Finished {
    let compiled = compile_dir(&args.mappings.dir, args.mappings.schema.as_deref());
    report(args, &compiled, None)
}

/// `check --source`: the mapping directory, then the data read once.
pub async fn with_source(args: CheckArgs) -> Finished {
    let compiled = compile_dir(&args.mappings.dir, args.mappings.schema.as_deref());
    let (Some(plan), Some(spec)) = (&compiled.plan, &args.source) else { return report(&args, &compiled, None) };
    let source = match crate::source::Source::open(spec, args.source_db.as_deref()).await {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    let rt = tokio::runtime::Handle::current();
    let inventories = match tokio::task::block_in_place(|| scan(&plan.mappings, &source, rt)) {
        Ok(i) => i,
        Err(e) => return super::fail(e),
    };
    let mut cov = coverage(&plan.mappings, &inventories);
    // A live server sends only the fields the mappings read.
    if !source.whole_documents() {
        cov.left_behind.clear();
    }
    report(&args, &compiled, Some(&cov))
}

/// The diagnostics (and the coverage), as text on stderr or one JSON document on stdout.
fn report(args: &CheckArgs, compiled: &Compiled, cov: Option<&Coverage>) -> Finished {
    let d = &compiled.diagnostics;
    match args.format {
        CheckFormat::Json => match cov {
            None => println!("{}", d.render_json()),
            Some(cov) => {
                let diagnostics: serde_json::Value = serde_json::from_str(&d.render_json()).unwrap_or_default();
                let both = serde_json::json!({ "diagnostics": diagnostics, "coverage": cov });
                println!("{}", serde_json::to_string_pretty(&both).unwrap_or_default());
            }
        },
        CheckFormat::Text => {
            let color = crate::cli::color_stderr();
            eprint!("{}", d.render_text(color));
            if let Some(cov) = cov {
                eprint!("{}", cov.render_text());
            }
            match &compiled.plan {
                Some(p) => eprintln!(
                    "{}: {} mappings, {} stages, {} warnings",
                    if d.is_empty() { "ok" } else { "ok with warnings" },
                    p.mappings.len(),
                    p.stages.len(),
                    d.warning_count()
                ),
                None => eprintln!("{} errors, {} warnings", d.error_count(), d.warning_count()),
            }
        }
    }
    if d.has_errors() {
        return Err(Failure::shown());
    }
    let unmatched = cov.map_or(0, |c| c.unmatched.len());
    if args.strict && unmatched > 0 {
        return Err(Failure::new(format!("--strict: {unmatched} mapped path(s) matched no document")));
    }
    Ok(Outcome::Ok)
}
