mod check;
mod db;
mod manage;
mod run;
