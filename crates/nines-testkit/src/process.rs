//! Roles of the real binary as OS processes, for tests that kill and restart them.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1, never one this process was handed before (released
/// before use; tests tolerate the small race with other processes). The kernel readily
/// gives a just-released port to the next bind, so two roles of one test could get the same
/// port without the record of those handed out.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding an ephemeral port on 127.0.0.1");
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// A running role: its child process, its admin port and its log file. SIGKILLed on drop.
#[derive(Debug)]
pub struct Process {
    pub name: String,
    child: Child,
    admin: u16,
    pub log: PathBuf,
}

impl Process {
    /// Starts `command` (stderr should already go to `log`) and waits until its admin
    /// `/readyz` answers ready (or degraded: up, but needing an operator); panics with the log if it exits or is not ready in `timeout`.
    pub fn start(
        name: &str,
        mut command: Command,
        admin: u16,
        log: PathBuf,
        timeout: Duration,
    ) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut p = Self {
            name: name.to_owned(),
            child,
            admin,
            log,
        };
        p.wait_ready(timeout);
        p
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "{} exited early ({status}):\n{}",
                    self.name,
                    self.log_text()
                );
            }
            // Up: ready, or running but waiting for an operator (`degraded: …`).
            if http_status(self.admin, "/readyz").is_some_and(|(code, body)| {
                (code == 200 && body.contains("ready")) || body.starts_with("degraded")
            }) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} not ready in {timeout:?}:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Port of the role's admin server (`/metrics`, `/readyz`).
    pub fn admin_port(&self) -> u16 {
        self.admin
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The role's Prometheus text (empty if it does not answer).
    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (panics if it takes more than 30 s).
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait_exit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{} did not exit within 30s of SIGTERM", self.name))
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resident memory now (`VmRSS`) and at its peak so far (`VmHWM`), in bytes.
    pub fn rss(&self) -> Option<(u64, u64)> {
        rss_of(self.child.id())
    }

    /// Starts a new peak: sets `VmHWM` to the current `VmRSS` (`/proc/<pid>/clear_refs`), so
    /// that a later [`Process::rss`] reports the peak of one phase only.
    pub fn reset_peak_rss(&self) -> std::io::Result<()> {
        reset_peak_rss_of(self.child.id())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `VmRSS` and `VmHWM` (peak) of a live process, in bytes, from `/proc/<pid>/status`.
pub fn rss_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Sets a live process's `VmHWM` back to its `VmRSS` (Linux `clear_refs`, value 5).
pub fn reset_peak_rss_of(pid: u32) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// Whether `status` is death by the signal `signal` (e.g. 6, SIGABRT, for a crash point).
pub fn killed_by(status: ExitStatus, signal: i32) -> bool {
    status.signal() == Some(signal)
}

/// The value of one sample in Prometheus text: `name` followed by exactly `labels`
/// (e.g. `{partition="0"}`, or "" for none).
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The sum of every sample of `name`, whatever its labels.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET path` on 127.0.0.1:`port`; the body-with-headers of a 200 answer.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_get_any(port, path).filter(|t| t.starts_with("HTTP/1.1 200"))
}

/// The whole answer (status line, headers, body) to `GET path`, whatever its status.
fn http_get_any(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    // Long enough for an answer that runs a query (the release gate) in a debug build.
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// `GET path` on 127.0.0.1:`port`: the status code and the body, whatever the status; `None`
/// if nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<(u16, String)> {
    let text = http_get_any(port, path)?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((code, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        // The kernel may give the same ephemeral port to two binds in a row once the first
        // is released: a role's admin and ingest ports once came out equal.
        let ports: Vec<u16> = (0..3000).map(|_| free_port()).collect();
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn metric_lines_are_found_by_name_and_labels() {
        let text = "# TYPE x counter\nx_total{reason=\"a\"} 3\nx_total{reason=\"b\"} 4\nx_totally 9\ny 2.5\n";
        assert_eq!(metric(text, "x_total", "{reason=\"b\"}"), Some(4.0));
        assert_eq!(metric(text, "y", ""), Some(2.5));
        assert_eq!(metric(text, "z", ""), None);
        assert_eq!(metric_sum(text, "x_total"), 7.0);
    }

    #[test]
    fn own_rss_is_readable() {
        let (now, peak) = rss_of(std::process::id()).unwrap();
        assert!(now > 0 && peak >= now);
    }

    #[test]
    fn peak_rss_resets_to_current() {
        const MIB: u64 = 1024 * 1024;
        let pid = std::process::id();
        // 256 MiB touched, then returned to the system (an mmap-sized allocation).
        let big = vec![1_u8; 256 * MIB as usize];
        std::hint::black_box(&big);
        drop(big);
        let (now, peak) = rss_of(pid).unwrap();
        assert!(peak >= now + 200 * MIB, "peak {peak} now {now}");
        reset_peak_rss_of(pid).unwrap();
        let (now, peak) = rss_of(pid).unwrap();
        assert!(
            peak < now + 100 * MIB,
            "peak {peak} now {now} after the reset"
        );
    }
}
