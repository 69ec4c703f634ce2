mod check;
mod db;
mod run;
