//! linli integration tests: one binary, a module per area.

mod api;
mod audit;
mod cli;
mod data;
mod hostile;
