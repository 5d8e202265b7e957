//! Small reads of `/proc/PID` files, shared by the owner lookup, nginx discovery, the process
//! sampler and the privilege check. Each takes the process directory, so tests can point at a
//! fake /proc.
use std::{fs, path::Path};

pub fn comm(dir: &Path) -> Option<String> {
    Some(
        fs::read_to_string(dir.join("comm"))
            .ok()?
            .trim_end()
            .to_owned(),
    )
}

/// The command line, arguments joined by spaces. A title a process rewrote (nginx's
/// `nginx: master process ...`) is NUL-padded; real arguments are NUL-separated.
pub fn cmdline(dir: &Path) -> Option<String> {
    Some(cmdline_text(&fs::read(dir.join("cmdline")).ok()?))
}

/// The contents of a `cmdline` file as [`cmdline`] returns them.
pub fn cmdline_text(raw: &[u8]) -> String {
    let args: Vec<_> = raw
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(String::from_utf8_lossy)
        .collect();
    args.join(" ")
}

/// The fields of `stat` the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub comm: String,
    /// R running, S sleeping, D disk wait, Z zombie, ...
    pub state: char,
    pub ppid: u32,
    /// CPU time in clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub num_threads: i64,
    /// Clock ticks after boot: with the pid, what tells a reused pid apart.
    pub starttime: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

impl ProcStat {
    pub fn read(dir: &Path) -> Option<ProcStat> {
        Self::parse(&fs::read_to_string(dir.join("stat")).ok()?)
    }

    /// The comm sits in parentheses and may hold spaces and parentheses itself: the fields
    /// start after the last `)`.
    pub fn parse(stat: &str) -> Option<ProcStat> {
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_owned();
        let f: Vec<&str> = rest.split_whitespace().collect();
        // f[0] is field 3 of proc(5).
        let field = |n: usize| f.get(n - 3).copied();
        let num = |n: usize| field(n)?.parse::<u64>().ok();
        Some(ProcStat {
            comm,
            state: field(3)?.chars().next()?,
            ppid: field(4)?.parse().ok()?,
            utime: num(14)?,
            stime: num(15)?,
            num_threads: field(20)?.parse().ok()?,
            starttime: num(22)?,
            rss_pages: num(24)?,
        })
    }
}

/// PPid from `stat`, the field after the state (the rest of the line is not needed).
pub fn parent_pid(dir: &Path) -> Option<u32> {
    stat_parent_pid(&fs::read_to_string(dir.join("stat")).ok()?)
}

/// PPid from the text of a `stat` file.
pub fn stat_parent_pid(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A `Key:\tvalue` line of `status`, value trimmed.
pub fn status_field(dir: &Path, key: &str) -> Option<String> {
    let status = fs::read_to_string(dir.join("status")).ok()?;
    status_text_field(&status, key).map(str::to_owned)
}

/// A `Key:\tvalue` line of the text of a `status` file, value trimmed.
pub fn status_text_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        Some(value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::ProcStat;

    #[test]
    fn stat_fields_after_a_tricky_comm() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0 9876 100000 512 18446744073709551615";
        let s = ProcStat::parse(line).unwrap();
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!((s.state, s.ppid, s.utime, s.stime), ('S', 1, 250, 30));
        assert_eq!((s.num_threads, s.starttime, s.rss_pages), (3, 9876, 512));
        assert!(ProcStat::parse("12 (x) S 1").is_none(), "truncated");
        let me = ProcStat::read(std::path::Path::new("/proc/self")).unwrap();
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
    }
}
