//! `finlit-map validate`: counts, content and integrity of a migration.

use crate::cli::{CheckFormat, Failure, Finished, Outcome, ValidateArgs};
use crate::pg::target;
use crate::run::select;
use crate::source::Source;
use crate::validate::validate;

pub async fn run(args: ValidateArgs) -> Finished {
    let Some(plan) = super::load_plan(&args.mappings) else { return Err(Failure::shown()) };
    let source = match Source::open(&args.source.source, args.source.source_db.as_deref()).await {
        Ok(s) => s,
        Err(e) => return super::fail(e),
    };
    let mappings = match select(&plan, &args.collections) {
        Ok(m) => m,
        Err(e) => return super::selection_failed(e),
    };
    let missing = crate::run::missing_collections(&mappings, &source);
    if !missing.is_empty() {
        let list = missing.join(", ");
        if !args.allow_missing {
            return super::fail(format!(
                "the source has no collection for {list}; validating against nothing proves nothing\n  check --source, or pass --allow-missing to validate the rest"
            ));
        }
        eprintln!("warning: not validated, not in the source: {list} (--allow-missing)");
    }
    let mut conn = match target::connect(&args.target.target).await {
        Ok(c) => c,
        Err(e) => return super::fail(e),
    };
    if let Some(why) = super::unfinished_first_load(&mut conn).await {
        return super::fail(why);
    }
    let report = match validate(&plan, &mappings, &source, &mut conn, args.sample, args.count_only).await {
        Ok(r) => r,
        Err(e) => return super::fail(e),
    };
    match args.format {
        CheckFormat::Json => println!("{}", report.render_json()),
        CheckFormat::Text => print!("{}", report.render_text(crate::cli::color_stdout())),
    }
    if report.passed { Ok(Outcome::Ok) } else { Err(Failure::shown()) }
}
