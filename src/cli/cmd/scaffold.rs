//! `finlit-map scaffold`: sample collections, write draft mappings and a
//! migration, check the draft.

use std::path::PathBuf;

use crate::cli::{Failure, Finished, Outcome, ScaffoldArgs};
use crate::plan::MappingPlan;
use crate::scaffold::{Reservoir, Shape, draft};
use crate::source::{Source, SourceItem};

pub async fn run(args: ScaffoldArgs) -> Finished {
    let source = match Source::open(&args.source.source, args.source.source_db.as_deref()).await {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    let schema_dir = args.schema.clone().unwrap_or_else(|| {
        args.out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("schema"), |p| p.join("schema"))
    });
    let names: Vec<String> = if args.all {
        // Every collection no mapping in --out reads yet.
        let mut diags = crate::lang::diag::Diagnostics::default();
        let read: Vec<String> = if args.out.is_dir() {
            crate::lang::spec::load_dir(&args.out, &mut diags)
                .1
                .into_iter()
                .filter_map(|m| m.source.map(|s| s.value))
                .collect()
        } else {
            Vec::new()
        };
        match source.collections().await {
            Ok(c) => c.into_iter().map(|c| c.name).filter(|n| !read.contains(n)).collect(),
            Err(e) => return super::fail(e),
        }
    } else {
        args.collections.clone()
    };
    if names.is_empty() {
        println!("nothing to draft: every collection of the source has a mapping in {}", args.out.display());
        return Ok(Outcome::Ok);
    }
    let rt = tokio::runtime::Handle::current();
    let mut tables = Vec::new();
    for name in &names {
        if !source.has(name) {
            return Err(Failure::usage(format!("the source has no collection `{name}`")));
        }
        let sampled = tokio::task::block_in_place(|| -> Result<_, crate::source::SourceError> {
            let mut reservoir = Reservoir::new(args.sample);
            let mut stream = source.stream(&MappingPlan::reading(name), None, 1000, rt.clone())?;
            while let Some(item) = stream.next_doc() {
                if let SourceItem::Doc(d) = item? {
                    reservoir.offer(d);
                }
            }
            Ok(reservoir)
        });
        let reservoir = match sampled {
            Ok(r) => r,
            Err(e) => return super::fail(e),
        };
        let mut shape = Shape::default();
        for d in &reservoir.sample {
            shape.add(d);
        }
        tables.push((name.clone(), draft(name, &shape, reservoir.seen())));
    }
    // Write nothing over anything: every file is new.
    let write = |path: PathBuf, text: String| -> Result<(), Failure> {
        super::write_new(&path, &text)?;
        println!("wrote {}", path.display());
        Ok(())
    };
    for d in [&args.out, &schema_dir] {
        std::fs::create_dir_all(d).map_err(|e| Failure::new(format!("cannot create {}: {e}", d.display())))?;
    }
    let next = super::next_migration(&schema_dir)?;
    let stem = if names.len() == 1 {
        format!("{next:04}_{}", crate::scaffold::column_name(&names[0]))
    } else {
        format!("{next:04}_scaffold")
    };
    // Every file is new, or none is written.
    let mut planned: Vec<PathBuf> =
        tables.iter().flat_map(|(_, d)| d.iter().map(|t| args.out.join(format!("{}.toml", t.table)))).collect();
    planned.push(schema_dir.join(format!("{stem}.up.sql")));
    if let Some(p) = planned.iter().find(|p| p.exists()) {
        return Err(Failure::new(format!("{} exists (scaffold never overwrites; nothing was written)", p.display())));
    }
    let mut up = String::from("-- Drafted by `finlit-map scaffold` from sampled documents: read it, then edit.\n\n");
    let mut down = String::new();
    for (collection, drafted) in &tables {
        for t in drafted {
            up.push_str(&t.ddl());
            up.push('\n');
            write(args.out.join(format!("{}.toml", t.table)), t.toml(collection))?;
        }
        for t in drafted.iter().rev() {
            down.push_str(&format!("DROP TABLE IF EXISTS \"{}\";\n", t.table.replace('"', "\"\"")));
        }
    }
    write(schema_dir.join(format!("{stem}.up.sql")), up)?;
    write(schema_dir.join(format!("{stem}.down.sql")), down)?;
    // The report: what each draft holds, then whether it checks.
    for (collection, drafted) in &tables {
        for t in drafted {
            println!("\n{collection} -> {} ({})", t.table, t.notes.join("; "));
            for c in &t.columns {
                println!("  {:28} {:24} {}", c.name, c.sql, c.comment);
            }
        }
    }
    let compiled = crate::compile::compile_dir(&args.out, Some(&schema_dir));
    let d = &compiled.diagnostics;
    if d.has_errors() {
        eprint!("{}", d.render_text(crate::cli::color_stderr()));
        return Err(Failure::new("the draft does not check; the problems are above"));
    }
    println!("\nthe draft checks: `finlit-map check {}` (and `run --dry-run`) to go on", args.out.display());
    Ok(Outcome::Ok)
}
