//! `finlit-map plan`: print the compiled plan (text, JSON or Graphviz).

use crate::cli::{PlanArgs, PlanFormat, exit};
use crate::compile::compile_dir;

pub fn run(args: &PlanArgs) -> u8 {
    let compiled = compile_dir(&args.mappings.dir, args.mappings.schema.as_deref());
    let Some(plan) = compiled.plan else {
        eprint!("{}", compiled.diagnostics.render_text(false));
        eprintln!("no plan: fix the errors above (`finlit-map check` shows them too)");
        return exit::FAILED;
    };
    match args.format {
        PlanFormat::Text => print!("{}", plan.render_text()),
        PlanFormat::Json => println!("{}", plan.render_json()),
        PlanFormat::Dot => print!("{}", plan.render_dot()),
    }
    exit::OK
}
