//! `finlit-map check`: compile the mapping directory and print every diagnostic.

use std::io::IsTerminal;

use crate::cli::{CheckArgs, CheckFormat, Failure, Finished, Outcome};
use crate::compile::compile_dir;

pub fn run(args: &CheckArgs) -> Finished {
    let compiled = compile_dir(&args.mappings.dir, args.mappings.schema.as_deref());
    let d = &compiled.diagnostics;
    match args.format {
        CheckFormat::Json => println!("{}", d.render_json()),
        CheckFormat::Text => {
            let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            eprint!("{}", d.render_text(color));
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
    if d.has_errors() { Err(Failure::shown()) } else { Ok(Outcome::Ok) }
}
