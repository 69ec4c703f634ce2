//! `finlit-map plan`: print the compiled plan (text, JSON or Graphviz).

use crate::cli::{Failure, Finished, Outcome, PlanArgs, PlanFormat};
use crate::compile::compile_dir;

pub fn run(args: &PlanArgs) -> Finished {
    let compiled = compile_dir(&args.mappings.dir, args.mappings.schema.as_deref());
    let Some(plan) = compiled.plan else {
        eprint!("{}", compiled.diagnostics.render_text(false));
        eprintln!("no plan: fix the errors above (`finlit-map check` shows them too)");
        return Err(Failure::shown());
    };
    match args.format {
        PlanFormat::Text => print!("{}", plan.render_text()),
        PlanFormat::Json => println!("{}", plan.render_json()),
        PlanFormat::Dot => print!("{}", plan.render_dot()),
    }
    Ok(Outcome::Ok)
}
