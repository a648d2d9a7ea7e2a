//! The `log` capability: plugin log lines into the host's log, tagged by the host.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::runtime::HostState;
use crate::runtime::bindings::linli::plugin::log::{self, Level};

/// A per-installation budget of log lines per second (a token bucket), shared by its calls.
#[derive(Debug)]
pub struct LogLimiter {
    per_second: u32,
    bucket: Mutex<(f64, Instant)>,
    dropped: AtomicU64,
}

impl LogLimiter {
    pub fn new(per_second: u32) -> Self {
        LogLimiter {
            per_second,
            bucket: Mutex::new((f64::from(per_second), Instant::now())),
            dropped: AtomicU64::new(0),
        }
    }

    /// Take one line from the budget; `false` if it is spent.
    pub fn admit(&self) -> bool {
        let mut guard = self.bucket.lock().expect("log bucket lock");
        let (tokens, last) = &mut *guard;
        let now = Instant::now();
        let rate = f64::from(self.per_second);
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Lines dropped so far for being over the budget.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Cut `line` to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(line: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if line.len() <= max {
        return line.into();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[truncated {} bytes]", &line[..end], line.len() - end).into()
}

impl log::Host for HostState {
    async fn log(&mut self, level: Level, message: String) {
        if !self.capabilities_enabled || !self.call.granted("log") || !self.call.log_limiter.admit()
        {
            return;
        }
        let line = truncate(&message, self.limits.log_line_bytes);
        let scope = &self.call.scope;
        let rid = &self.call.request_id;
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(target: "plugin", tenant = %scope.tenant, plugin = %scope.plugin, request_id = %rid, "{line}")
            };
        }
        match level {
            Level::Trace => emit!(trace),
            Level::Debug => emit!(debug),
            Level::Info => emit!(info),
            Level::Warn => emit!(warn),
            Level::Error => emit!(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("hello", 10), "hello");
        let t = truncate("你好世界", 4);
        assert!(t.starts_with("你…"), "{t}");
        assert!(t.contains("truncated 9 bytes"));
    }

    #[test]
    fn budget_drops_excess_lines() {
        let l = LogLimiter::new(3);
        let admitted = (0..10).filter(|_| l.admit()).count();
        assert!((3..10).contains(&admitted), "{admitted}");
        assert_eq!(l.dropped() as usize, 10 - admitted);
    }
}
