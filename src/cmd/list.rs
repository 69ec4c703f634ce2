//! `finlit-map list`: what the source holds and which mappings read it.

use crate::cli::{ListArgs, exit};
use crate::compile::compile_dir;
use crate::source::FileSource;

pub fn run(args: &ListArgs) -> u8 {
    let source = match FileSource::open(std::path::Path::new(&args.source.source)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILED;
        }
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
    let mut failed = false;
    for (name, f) in &source.collections {
        let count = match source.count(name) {
            Some(Ok(n)) => n.to_string(),
            Some(Err(e)) => {
                failed = true;
                format!("error: {e}")
            }
            None => "-".into(),
        };
        let used = readers(name);
        println!(
            "{:28} {:>10}  {:10}  {}",
            name,
            count,
            format!("{:?}", f.format).to_lowercase(),
            if used.is_empty() { "(none)".into() } else { used }
        );
    }
    if let Some(p) = &plan {
        for m in p.mappings.iter().filter(|m| !source.collections.contains_key(&m.source)) {
            println!("{:28} {:>10}  {:10}  {} (collection missing from the source)", m.source, "-", "-", m.name);
        }
    }
    if failed { exit::FAILED } else { exit::OK }
}
