//! linli integration tests: one binary, a module per area.

mod api;
mod audit;
mod browser;
mod cli;
mod commands;
mod consultation;
mod data;
mod devices;
mod elderly;
mod events;
mod hostile;
mod identity;
mod load;
mod logs;
mod messaging;
mod parking;
mod reliability;
mod security;
mod telemetry;
