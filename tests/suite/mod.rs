mod binary;
mod check;
mod db;
mod live;
mod manage;
mod mongo;
mod run;
