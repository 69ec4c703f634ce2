//! One module per command. Each takes its parsed arguments and returns an
//! exit code; none parses TOML or SQL itself (that is `compile`'s job).

pub mod check;
pub mod list;
pub mod plan;
pub mod run;

use crate::compile::compile_dir;
use crate::plan::Plan;

/// Compiles the mapping directory, or prints why not.
pub fn load_plan(args: &crate::cli::MappingDirArgs) -> Option<Plan> {
    let compiled = compile_dir(&args.dir, args.schema.as_deref());
    if compiled.plan.is_none() {
        eprint!("{}", compiled.diagnostics.render_text(false));
        eprintln!("the mappings have errors: fix them first (`finlit-map check` shows them too)");
    }
    compiled.plan
}
