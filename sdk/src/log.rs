//! Log lines into the host's log, tagged by the host with tenant, plugin and request id.
//! Over-long lines are truncated and lines over the installation's rate are dropped by the
//! host. (`println!`/`eprintln!` also reach the host log, captured per call.)

use crate::__private::linli::plugin::log::{Level, log};

pub fn trace(message: &str) {
    log(Level::Trace, message);
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}
