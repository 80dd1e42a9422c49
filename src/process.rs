//! Processes: who holds a lease or runs a run, whether it is still alive, and the signals that
//! ask this one to stop. A pid alone is not enough (pids are recycled), so a holder is its host,
//! pid and start time.
use serde::{Deserialize, Serialize};

/// A process, identified well enough to tell whether it is still the same live process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// Start time of the process (clock ticks since boot, from /proc).
    pub start: Option<u64>,
}

impl Holder {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self { host: hostname(), pid, start: start_time(pid) }
    }

    /// `Some(alive)` for a process on this host; `None` where it cannot be told from here
    /// (another host, or no /proc): then only a lapsed heartbeat or lease says it died.
    pub fn alive(&self) -> Option<bool> {
        if self.host != hostname() || !std::path::Path::new("/proc/self/stat").exists() {
            return None;
        }
        Some(match start_time(self.pid) {
            None => false,
            Some(started) => self.start.is_none_or(|recorded| recorded == started),
        })
    }
}

/// Wait for Ctrl-C or SIGTERM.
pub async fn interrupt_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// Start time of a live, non-zombie process; `None` if there is none with that pid.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_recycled_pid_is_not() {
        let me = Holder::current();
        assert_eq!(me.alive(), Some(true));
        assert_eq!(Holder { start: me.start.map(|s| s + 1), ..me.clone() }.alive(), Some(false));
        assert_eq!(Holder { host: "elsewhere".into(), ..me }.alive(), None);
    }
}
