//! A run as tasks: each range of each mapping's collection is a load, and
//! each table loaded before its keys exist has a build. Workers claim them
//! from a board: the claims table in the target (`pg::claims`), or, for a
//! dry run, which has no database, a list in memory with the same rules.
//!
//! What a task waits for follows the plan's stages: a load into a table
//! with its keys in place waits for every task of earlier stages (its
//! references are checked against finished tables, as they always were); a
//! load into a deferred table waits for nothing (nothing is checked while it
//! loads); a build waits for every load into its table and every task of
//! earlier stages (the tables it points at are built).
//!
//! Knows the plan and the source's ranges; SQL only through `pg::claims`.

use std::collections::BTreeSet;
use std::sync::Mutex;

use sqlx::PgConnection;

use crate::pg::claims::{self, NewTask, TaskRow};
use crate::plan::{MappingPlan, Plan};
use crate::source::{Position, Range};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Load,
    Build,
}

/// One task of a run.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: i32,
    pub kind: Kind,
    /// The mapping a load reads (its index in the plan).
    pub mapping: Option<usize>,
    pub table: String,
    pub stage: i32,
    pub waits_for_earlier: bool,
    pub range_no: i32,
    pub ranges: i32,
    pub range: Range,
}

impl Task {
    fn as_new(&self, plan: &Plan) -> NewTask {
        NewTask {
            task: self.id,
            kind: match self.kind {
                Kind::Load => "load",
                Kind::Build => "build",
            },
            mapping: self.mapping.map(|i| plan.mappings[i].name.clone()),
            table: self.table.clone(),
            stage: self.stage,
            waits: if self.waits_for_earlier { "earlier" } else { "nothing" },
            range_no: self.range_no,
            ranges: self.ranges,
            range: serde_json::to_value(&self.range).unwrap_or_default(),
        }
    }

    /// Whether `other`, not done, keeps this task waiting.
    fn waits_on(&self, other: &Task) -> bool {
        (self.waits_for_earlier && other.stage < self.stage)
            || (self.kind == Kind::Build && other.kind == Kind::Load && other.table == self.table)
    }

    fn from_row(plan: &Plan, row: &TaskRow) -> Task {
        Task {
            id: row.task,
            kind: if row.kind == "build" { Kind::Build } else { Kind::Load },
            mapping: row.mapping.as_ref().and_then(|n| plan.mappings.iter().position(|m| &m.name == n)),
            table: row.table_name.clone(),
            stage: row.stage,
            waits_for_earlier: true,
            range_no: row.range_no,
            ranges: row.ranges,
            range: row.range.clone().and_then(|r| serde_json::from_value(r).ok()).unwrap_or_default(),
        }
    }
}

/// The tasks of a run over `selected`, in plan order: loads by stage and
/// range, each deferred table's build after the last stage loading it.
/// `ranges(m)` gives a mapping's ranges; `first_id` numbers them.
pub fn plan_tasks(
    plan: &Plan,
    selected: &[&MappingPlan],
    deferred: &BTreeSet<String>,
    ranges: &dyn Fn(&MappingPlan) -> Vec<Range>,
    first_id: i32,
) -> Vec<Task> {
    let mut out: Vec<Task> = Vec::new();
    let mut id = first_id;
    let last_stage = |table: &str| {
        plan.stages
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.iter().any(|&i| {
                    plan.mappings[i].table == table && selected.iter().any(|m| std::ptr::eq(*m, &plan.mappings[i]))
                })
            })
            .map(|(n, _)| n)
            .max()
    };
    for (n, stage) in plan.stages.iter().enumerate() {
        for &i in stage {
            let m = &plan.mappings[i];
            if !selected.iter().any(|s| std::ptr::eq(*s, m)) {
                continue;
            }
            let parts = ranges(m);
            let count = parts.len() as i32;
            for (r, range) in parts.into_iter().enumerate() {
                out.push(Task {
                    id,
                    kind: Kind::Load,
                    mapping: Some(i),
                    table: m.table.clone(),
                    stage: n as i32,
                    waits_for_earlier: !deferred.contains(&m.table),
                    range_no: r as i32,
                    ranges: count,
                    range,
                });
                id += 1;
            }
        }
        for t in deferred {
            if last_stage(t) == Some(n) {
                out.push(Task {
                    id,
                    kind: Kind::Build,
                    mapping: None,
                    table: t.clone(),
                    stage: n as i32,
                    waits_for_earlier: true,
                    range_no: 0,
                    ranges: 1,
                    range: Range::whole(),
                });
                id += 1;
            }
        }
    }
    out
}

/// Records a run's tasks in the claims table.
pub async fn record(conn: &mut PgConnection, plan: &Plan, run_id: i64, tasks: &[Task]) -> Result<(), sqlx::Error> {
    let rows: Vec<NewTask> = tasks.iter().map(|t| t.as_new(plan)).collect();
    claims::insert(conn, run_id, &rows).await
}

/// A task a worker holds, with where it stood.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub task: Task,
    /// The claim number: the fencing token of every checkpoint.
    pub claim: i32,
    pub position: Option<Position>,
    pub report: Option<serde_json::Value>,
    pub fingerprint: Option<String>,
}

/// What a worker is told when it asks for work.
pub enum Next {
    Task(Box<Claimed>),
    /// Nothing free now; tasks still run or wait.
    Wait,
    /// Every task is done.
    Done,
}

/// A task's state as the board keeps it.
#[derive(Debug, Clone)]
pub struct State {
    pub task: Task,
    pub done: bool,
    pub report: Option<serde_json::Value>,
}

/// Who claims tasks, and for how long a claim lasts without news.
#[derive(Debug, Clone)]
pub struct Worker {
    pub name: String,
    /// Seconds.
    pub lease: f64,
}

/// Where workers take their tasks from.
pub enum Board {
    /// A dry run's: no database.
    Memory(Mutex<Vec<(State, bool)>>),
    /// The claims table of the target, for this worker.
    Ledger { run_id: i64, worker: Worker, deferred: BTreeSet<String> },
}

impl Board {
    pub fn memory(tasks: Vec<Task>) -> Board {
        Board::Memory(Mutex::new(
            tasks.into_iter().map(|task| (State { task, done: false, report: None }, false)).collect(),
        ))
    }

    /// Whether the task's table is loaded before its keys.
    pub fn deferred(&self, table: &str) -> bool {
        match self {
            Board::Memory(_) => false,
            Board::Ledger { deferred, .. } => deferred.contains(table),
        }
    }

    pub fn lease(&self) -> f64 {
        match self {
            Board::Memory(_) => f64::MAX,
            Board::Ledger { worker, .. } => worker.lease,
        }
    }

    pub fn run_id(&self) -> i64 {
        match self {
            Board::Memory(_) => 0,
            Board::Ledger { run_id, .. } => *run_id,
        }
    }

    /// The next task for this worker (`conn`, none for a dry run).
    pub async fn next(&self, plan: &Plan, conn: Option<&mut PgConnection>) -> Result<Next, sqlx::Error> {
        match (self, conn) {
            (Board::Memory(list), _) => {
                let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
                if list.iter().all(|(s, _)| s.done) {
                    return Ok(Next::Done);
                }
                let ready = (0..list.len()).find(|&i| {
                    let (s, taken) = &list[i];
                    !s.done && !taken && !list.iter().any(|(o, _)| !o.done && s.task.waits_on(&o.task))
                });
                Ok(match ready {
                    Some(i) => {
                        list[i].1 = true;
                        Next::Task(Box::new(Claimed {
                            task: list[i].0.task.clone(),
                            claim: 1,
                            position: None,
                            report: None,
                            fingerprint: None,
                        }))
                    }
                    None => Next::Wait,
                })
            }
            (Board::Ledger { run_id, worker, deferred }, Some(c)) => {
                match claims::claim(c, *run_id, &worker.name, worker.lease).await? {
                    Some(row) => {
                        let mut task = Task::from_row(plan, &row);
                        task.waits_for_earlier = task.kind == Kind::Build || !deferred.contains(&task.table);
                        Ok(Next::Task(Box::new(Claimed {
                            task,
                            claim: row.claim,
                            position: row.position.and_then(|p| serde_json::from_value(p).ok()),
                            report: row.report,
                            fingerprint: row.fingerprint,
                        })))
                    }
                    None if claims::unfinished(c, *run_id).await? == 0 => Ok(Next::Done),
                    None => Ok(Next::Wait),
                }
            }
            (Board::Ledger { .. }, None) => Ok(Next::Done),
        }
    }

    /// A dry run's task is done (a real run's completes in its transaction).
    pub fn done_in_memory(&self, id: i32, report: serde_json::Value) {
        if let Board::Memory(list) = self {
            let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((s, _)) = list.iter_mut().find(|(s, _)| s.task.id == id) {
                s.done = true;
                s.report = Some(report);
            }
        }
    }

    /// Every task of the run and what it did.
    pub async fn states(&self, plan: &Plan, conn: Option<&mut PgConnection>) -> Result<Vec<State>, sqlx::Error> {
        match (self, conn) {
            (Board::Memory(list), _) => {
                Ok(list.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(s, _)| s.clone()).collect())
            }
            (Board::Ledger { run_id, .. }, Some(c)) => Ok(claims::all(c, *run_id)
                .await?
                .iter()
                .map(|row| State {
                    task: Task::from_row(plan, row),
                    done: row.state == "done",
                    report: row.report.clone(),
                })
                .collect()),
            (Board::Ledger { .. }, None) => Ok(Vec::new()),
        }
    }
}

/// This process's name in the claims table, as the worker holding tasks.
pub fn worker_name() -> String {
    format!("{}/{}", crate::pg::ledger::hostname(), std::process::id())
}
