//! `finlit-map list`: what the source holds and which mappings read it.

use crate::cli::{CheckFormat, Failure, Finished, ListArgs, Outcome};
use crate::compile::compile_dir;
use crate::source::Source;

pub async fn run(args: ListArgs) -> Finished {
    let source = match Source::open(&args.source.source, args.source.source_db.as_deref()).await {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    let collections = match source.collections().await {
        Ok(c) => c,
        Err(e) => return super::fail(e),
    };
    // The listing is useful even when the mappings do not compile.
    let compiled = compile_dir(&args.mappings.dir, args.mappings.schema.as_deref());
    let plan = compiled.plan;
    let readers = |coll: &str| -> String {
        plan.as_ref()
            .map(|p| {
                p.mappings.iter().filter(|m| m.source == coll).map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
            })
            .unwrap_or_default()
    };
    if args.format == CheckFormat::Json {
        let json: Vec<_> = collections
            .iter()
            .map(|c| {
                let used: Vec<String> = plan
                    .as_ref()
                    .map(|p| p.mappings.iter().filter(|m| m.source == c.name).map(|m| m.name.clone()).collect())
                    .unwrap_or_default();
                serde_json::json!({ "collection": c.name, "documents": c.documents, "format": c.kind.to_string(), "mappings": used })
            })
            .collect();
        let missing: Vec<_> = plan
            .as_ref()
            .map(|p| {
                p.mappings
                    .iter()
                    .filter(|m| !source.has(&m.source))
                    .map(|m| serde_json::json!({ "mapping": m.name, "collection": m.source }))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "collections": json, "missing": missing }))
                .unwrap_or_default()
        );
        return match &plan {
            Some(_) if missing.is_empty() => Ok(Outcome::Ok),
            Some(_) => {
                Err(Failure::new(format!("{} mapping(s) read collections the source does not have", missing.len())))
            }
            None => Err(Failure::new("the mappings do not load; `finlit-map check` shows why")),
        };
    }
    println!("{:28} {:>10}  {:10}  mappings", "collection", "documents", "format");
    for c in &collections {
        let used = readers(&c.name);
        let count = c.documents.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        println!("{:28} {:>10}  {:10}  {}", c.name, count, c.kind, if used.is_empty() { "(none)" } else { &used });
    }
    let Some(p) = &plan else {
        // Said, not hidden: run from the wrong directory, every collection
        // would otherwise look unmapped.
        eprintln!(
            "error: the mappings in {} do not load ({} problems; `finlit-map check {}` shows them), so no collection is shown as mapped",
            args.mappings.dir.display(),
            compiled.diagnostics.error_count(),
            args.mappings.dir.display()
        );
        return Err(Failure::shown());
    };
    let missing: Vec<_> = p.mappings.iter().filter(|m| !source.has(&m.source)).collect();
    for m in &missing {
        println!("{:28} {:>10}  {:10}  {} (collection missing from the source)", m.source, "-", "-", m.name);
    }
    if !missing.is_empty() {
        eprintln!(
            "error: {} mapping(s) read collections the source does not have; `run` refuses them unless --allow-missing",
            missing.len()
        );
        return Err(Failure::shown());
    }
    Ok(Outcome::Ok)
}
