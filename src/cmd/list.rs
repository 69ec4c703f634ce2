//! `finlit-map list`: what the source holds and which mappings read it.

use crate::cli::{ListArgs, exit};
use crate::compile::compile_dir;
use crate::source::Source;

pub async fn run(args: ListArgs) -> u8 {
    let source = match Source::open(&args.source.source, args.source.source_db.as_deref()).await {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    let collections = match source.collections().await {
        Ok(c) => c,
        Err(e) => return super::fail(e),
    };
    // The listing is useful even when the mappings do not compile.
    let plan = compile_dir(&args.mappings.dir, args.mappings.schema.as_deref()).plan;
    let readers = |coll: &str| -> String {
        plan.as_ref()
            .map(|p| {
                p.mappings.iter().filter(|m| m.source == coll).map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
            })
            .unwrap_or_default()
    };
    println!("{:28} {:>10}  {:10}  mappings", "collection", "documents", "format");
    for c in &collections {
        let used = readers(&c.name);
        let count = c.documents.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        println!("{:28} {:>10}  {:10}  {}", c.name, count, c.kind, if used.is_empty() { "(none)" } else { &used });
    }
    if let Some(p) = &plan {
        for m in p.mappings.iter().filter(|m| !source.has(&m.source)) {
            println!("{:28} {:>10}  {:10}  {} (collection missing from the source)", m.source, "-", "-", m.name);
        }
    }
    exit::OK
}
