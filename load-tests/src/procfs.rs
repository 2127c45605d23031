//! Reading CPU time and memory of processes from `/proc`.
//!
//! CPU time comes from `/proc/<pid>/stat` (`utime` + `stime`, in clock ticks, summed over
//! all threads of the process); peak memory from `VmHWM` in `/proc/<pid>/status`, which
//! writing `5` to `/proc/<pid>/clear_refs` resets (Linux ≥ 4.0) so that a peak can be taken
//! over one timed window rather than the process's life.

use std::fs;
use std::io;
use std::path::Path;

/// The fields of `/proc/<pid>/stat` this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Parent process id.
    pub ppid: u32,
    /// User-mode CPU time, clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time, clock ticks.
    pub stime: u64,
}

impl ProcStat {
    /// `utime + stime`, clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Why a `/proc` file could not be read or understood.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read (the process is gone, or no permission).
    #[error("cannot read /proc: {0}")]
    Read(String),
    /// The contents did not have the expected shape.
    #[error("unexpected /proc contents: {0}")]
    Malformed(&'static str),
}

/// Parses the contents of `/proc/<pid>/stat`.
///
/// The second field, the command name, is in parentheses and may itself contain spaces and
/// parentheses, so fields are counted from the **last** `)`.
pub fn parse_stat(text: &str) -> Result<ProcStat, ProcError> {
    let close = text
        .rfind(')')
        .ok_or(ProcError::Malformed("no ')' after the command name"))?;
    // After ")": state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9) minflt(10)
    // cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15) ...
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize, what: &'static str| -> Result<u64, ProcError> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or(ProcError::Malformed(what))
    };
    Ok(ProcStat {
        ppid: u32::try_from(field(4, "ppid")?).map_err(|_| ProcError::Malformed("ppid"))?,
        utime: field(14, "utime")?,
        stime: field(15, "stime")?,
    })
}

/// Reads and parses `/proc/<pid>/stat`.
pub fn read_stat(pid: u32) -> Result<ProcStat, ProcError> {
    parse_stat(&read(format!("/proc/{pid}/stat"))?)
}

/// The value in kB of the line `key:` of a `/proc/<pid>/status` text (e.g. `VmHWM`).
pub fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let value = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") | None => Some(value),
            Some(_) => None,
        }
    })
}

/// Peak resident set size (`VmHWM`) of `pid`, KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64, ProcError> {
    parse_status_kib(&read(format!("/proc/{pid}/status"))?, "VmHWM")
        .ok_or(ProcError::Malformed("no VmHWM line"))
}

/// Resets the peak RSS of `pid` to its current RSS; false when the kernel refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

/// The real user id from a `/proc/<pid>/status` text.
pub fn parse_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

/// The real user id of this process.
pub fn current_uid() -> Option<u32> {
    parse_uid(&read("/proc/self/status").ok()?)
}

/// `pid` and all its descendants alive now (e.g. an nginx master and its worker), `pid`
/// first.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Ok(stat) = read_stat(child) {
                parents.push((child, stat.ppid));
            }
        }
    }
    descendants(pid, &parents)
}

/// `root` and every pid whose chain of parents in `(pid, ppid)` pairs leads to it.
pub fn descendants(root: u32, pairs: &[(u32, u32)]) -> Vec<u32> {
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for &(pid, ppid) in pairs {
            if ppid == parent && pid != root && !tree.contains(&pid) {
                tree.push(pid);
            }
        }
        i += 1;
    }
    tree
}

/// Sum of `utime + stime` over `pids`, in clock ticks; processes that are gone count 0.
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    cpu_split(pids).0
}

/// `(utime + stime, stime)` summed over `pids`, in clock ticks: all CPU, and the part spent
/// in the kernel (system calls, TCP, fsync).
pub fn cpu_split(pids: &[u32]) -> (u64, u64) {
    pids.iter()
        .filter_map(|&pid| read_stat(pid).ok())
        .fold((0, 0), |(all, sys), s| (all + s.cpu_ticks(), sys + s.stime))
}

/// Clock ticks per second for `/proc/<pid>/stat` (`USER_HZ`): asks `getconf CLK_TCK`,
/// falling back to 100, the value on every Linux architecture in common use.
pub fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&hz| hz > 0)
        .unwrap_or(100)
}

/// Busy time of the whole machine from a `/proc/stat` text: `user + nice + system + irq +
/// softirq + steal` of the aggregate `cpu` line, clock ticks (idle and iowait excluded).
pub fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice] (guest is already
    // inside user).
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7).unwrap_or(&0))
}

/// Busy clock ticks of the whole machine so far (see [`parse_machine_busy`]); 0 if unknown.
pub fn machine_busy_ticks() -> u64 {
    read("/proc/stat")
        .ok()
        .and_then(|s| parse_machine_busy(&s))
        .unwrap_or(0)
}

/// The address that follows the first `needle` in `text` (a log line such as
/// `partner listener on 127.0.0.1:8443`, possibly inside JSON).
pub fn addr_after(text: &str, needle: &str) -> Option<std::net::SocketAddr> {
    let start = text.find(needle)? + needle.len();
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The CPU model from a `/proc/cpuinfo` text.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// Whether a `/proc/cpuinfo` text lists the CPU flag `flag` (e.g. `sha_ni`).
pub fn cpu_has_flag(cpuinfo: &str, flag: &str) -> bool {
    cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("flags"))
        .is_some_and(|flags| flags.split_whitespace().any(|f| f == flag))
}

fn read(path: impl AsRef<Path>) -> Result<String, ProcError> {
    fs::read_to_string(path.as_ref()).map_err(|e: io::Error| ProcError::Read(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (partner-gateway) S 100 4242 4242 0 -1 4194560 1523 0 0 0 \
                        371 58 0 0 20 0 3 0 123456 1234567 890 18446744073709551615";

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                ppid: 100,
                utime: 371,
                stime: 58
            }
        );
        assert_eq!(stat.cpu_ticks(), 429);
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_fields() {
        let text = STAT.replace("(partner-gateway)", "(nginx: worker) (x) 9 9)");
        assert_eq!(parse_stat(&text).unwrap().utime, 371);
    }

    #[test]
    fn truncated_stat_is_malformed() {
        assert_eq!(
            parse_stat("1 (init) S 0 1 1 0"),
            Err(ProcError::Malformed("utime"))
        );
        assert_eq!(
            parse_stat("garbage"),
            Err(ProcError::Malformed("no ')' after the command name"))
        );
    }

    #[test]
    fn status_values_are_read_in_kib() {
        let status = "Name:\tnginx\nVmPeak:\t  20000 kB\nVmHWM:\t    8164 kB\nVmRSS:\t 7000 kB\n\
                      Uid:\t33\t33\t33\t33\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(8164));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(7000));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        // A key that merely starts like another is not confused with it.
        assert_eq!(parse_status_kib("VmHWMx:\t1 kB\n", "VmHWM"), None);
        assert_eq!(parse_uid(status), Some(33));
    }

    #[test]
    fn descendants_follow_parent_links_transitively() {
        let pairs = [(1, 0), (10, 1), (11, 10), (12, 10), (13, 11), (20, 1)];
        assert_eq!(descendants(10, &pairs), vec![10, 11, 12, 13]);
        assert_eq!(descendants(99, &pairs), vec![99]);
    }

    #[test]
    fn machine_busy_sums_the_busy_columns() {
        let stat = "cpu  100 5 50 9000 30 2 3 7 0 0\ncpu0 50 2 25 4500 15 1 1 3 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(100 + 5 + 50 + 2 + 3 + 7));
        assert_eq!(parse_machine_busy("cpu0 1 2 3\n"), None);
        assert_eq!(parse_machine_busy("cpu  1 2 x 4 5 6 7 8\n"), None);
        assert!(machine_busy_ticks() > 0);
    }

    #[test]
    fn addresses_are_found_after_their_log_message() {
        let json =
            r#"{"level":"INFO","message":"partner listener on 127.0.0.1:40123","target":"x"}"#;
        assert_eq!(
            addr_after(json, "partner listener on "),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(
            addr_after("listening on [::1]:80\n", "listening on "),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            addr_after("admin listener on soon", "admin listener on "),
            None
        );
        assert_eq!(addr_after("nothing", "listening on "), None);
    }

    #[test]
    fn cpuinfo_model_and_flags() {
        let info = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n\
                    flags\t\t: fpu sse2 sha_ni aes\n";
        assert_eq!(
            parse_cpu_model(info).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert!(cpu_has_flag(info, "sha_ni"));
        assert!(!cpu_has_flag(info, "sha"));
    }

    #[test]
    fn this_process_can_be_read() {
        let me = std::process::id();
        assert!(read_stat(me).is_ok());
        assert!(peak_rss_kib(me).unwrap() > 0);
        assert_eq!(process_tree(me)[0], me);
    }
}
