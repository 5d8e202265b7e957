//! Which agent batches were already applied: per agent, every `sequence` up to a contiguous
//! floor plus a bounded window of those seen above it, so a retried or re-routed batch is
//! counted once. The state survives restarts: it is saved (atomically) before the
//! write-ahead log forgets a batch, and what the log still holds is replayed on top. Agents
//! silent for `idle` are forgotten, and their number is bounded.
use std::{
    collections::{BTreeSet, HashMap},
    fs,
    io::{self, Write},
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Batches far ahead of the contiguous floor are remembered up to this many per agent.
const WINDOW: usize = 65_536;
/// Longest agent id accepted (ingest refuses longer ones).
pub const MAX_AGENT_ID: usize = 256;

struct SeenWindow {
    /// Every sequence ≤ floor was applied.
    floor: u64,
    above: BTreeSet<u64>,
    seen: Instant,
}

impl SeenWindow {
    fn new() -> Self {
        SeenWindow {
            floor: 0,
            above: BTreeSet::new(),
            seen: Instant::now(),
        }
    }

    fn contains(&self, sequence: u64) -> bool {
        sequence <= self.floor || self.above.contains(&sequence)
    }
}

/// Which `(agent_id, sequence)` pairs were applied.
pub struct Dedup {
    agents: Mutex<HashMap<String, SeenWindow>>,
    max_agents: usize,
    idle: Duration,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup::new(100_000, Duration::from_secs(7 * 86_400))
    }
}

/// An agent id ingest accepts: bounded, printable, no whitespace (it is a file line's key).
pub fn valid_agent_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_AGENT_ID && id.chars().all(|c| c.is_ascii_graphic())
}

impl Dedup {
    /// At most `max_agents` agents; one silent for `idle` is forgotten (an agent id carries
    /// its start time, so a restarted agent is a new id anyway).
    pub fn new(max_agents: usize, idle: Duration) -> Self {
        Dedup {
            agents: Mutex::new(HashMap::new()),
            max_agents,
            idle,
        }
    }

    /// Whether the pair was applied already (nothing is recorded).
    pub fn seen(&self, agent: &str, sequence: u64) -> bool {
        let agents = self.agents.lock().expect("dedup lock");
        agents.get(agent).is_some_and(|w| w.contains(sequence))
    }

    /// True the first time a pair is seen.
    pub fn first_time(&self, agent: &str, sequence: u64) -> bool {
        let mut agents = self.agents.lock().expect("dedup lock");
        if !agents.contains_key(agent) && agents.len() >= self.max_agents {
            self.evict(&mut agents);
        }
        let w = match agents.get_mut(agent) {
            Some(w) => w,
            None => agents
                .entry(agent.to_owned())
                .or_insert_with(SeenWindow::new),
        };
        w.seen = Instant::now();
        if sequence <= w.floor || !w.above.insert(sequence) {
            return false;
        }
        while w.above.remove(&(w.floor + 1)) {
            w.floor += 1;
        }
        if w.above.len() > WINDOW {
            // A gap that never fills (a batch the agent dropped): move past it.
            let lowest = w.above.pop_first().expect("non-empty");
            w.floor = lowest;
        }
        true
    }

    /// Forgets idle agents; if none is idle, the one silent longest.
    fn evict(&self, agents: &mut HashMap<String, SeenWindow>) {
        let now = Instant::now();
        agents.retain(|_, w| now.duration_since(w.seen) < self.idle);
        if agents.len() >= self.max_agents {
            let oldest = agents
                .iter()
                .min_by_key(|(_, w)| w.seen)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                agents.remove(&oldest);
            }
        }
    }

    pub fn agents(&self) -> usize {
        self.agents.lock().expect("dedup lock").len()
    }

    /// Writes the state to `path` atomically (temp file, fsync, rename, directory fsync):
    /// one line per agent, `id floor seq,seq,...`.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut text = String::new();
        {
            let agents = self.agents.lock().expect("dedup lock");
            for (id, w) in agents.iter() {
                let above: Vec<String> = w.above.iter().map(u64::to_string).collect();
                text += &format!("{id} {} {}\n", w.floor, above.join(","));
            }
        }
        let tmp = path.with_extension("tmp");
        let mut file = fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// The state saved at `path`; a missing file is an empty state, a malformed line is
    /// skipped (the write-ahead log replay still covers recent batches).
    pub fn load(path: &Path, max_agents: usize, idle: Duration) -> io::Result<Dedup> {
        let dedup = Dedup::new(max_agents, idle);
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(dedup),
            Err(e) => return Err(e),
        };
        let mut agents = dedup.agents.lock().expect("dedup lock");
        for line in text.lines().take(max_agents) {
            let mut parts = line.splitn(3, ' ');
            let (Some(id), Some(floor), above) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(floor) = floor.parse() else { continue };
            let above = above
                .unwrap_or("")
                .split(',')
                .filter_map(|s| s.parse().ok())
                .take(WINDOW)
                .collect();
            agents.insert(
                id.to_owned(),
                SeenWindow {
                    floor,
                    above,
                    seen: Instant::now(),
                },
            );
        }
        drop(agents);
        Ok(dedup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_out_of_order_batches() {
        let d = Dedup::default();
        assert!(d.first_time("a", 1));
        assert!(!d.first_time("a", 1));
        assert!(d.first_time("a", 3));
        assert!(d.seen("a", 3) && !d.seen("a", 2));
        assert!(d.first_time("a", 2));
        assert!(!d.first_time("a", 3));
        assert!(!d.first_time("a", 2));
        assert!(d.first_time("b", 1), "per agent");
        assert_eq!(d.agents(), 2);
    }

    #[test]
    fn the_state_survives_a_save_and_load() {
        let dir = std::env::temp_dir().join(format!("vigil-dedup-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dedup");
        let d = Dedup::default();
        for seq in [1, 2, 3, 7, 9] {
            assert!(d.first_time("node-a/1-2", seq));
        }
        d.save(&path).unwrap();
        let again = Dedup::load(&path, 10, Duration::from_secs(60)).unwrap();
        for seq in [1, 2, 3, 7, 9] {
            assert!(
                !again.first_time("node-a/1-2", seq),
                "{seq} was applied before"
            );
        }
        assert!(again.first_time("node-a/1-2", 4));
        assert!(Dedup::load(&dir.join("absent"), 10, Duration::from_secs(60)).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn agents_are_bounded_and_ids_checked() {
        let d = Dedup::new(2, Duration::from_secs(3600));
        assert!(d.first_time("a", 1));
        assert!(d.first_time("b", 1));
        assert!(d.first_time("c", 1));
        assert_eq!(d.agents(), 2, "the longest-silent agent made room");
        assert!(valid_agent_id("node-a/1795602838000-4242"));
        assert!(!valid_agent_id("has space") && !valid_agent_id(""));
        assert!(!valid_agent_id(&"x".repeat(MAX_AGENT_ID + 1)));
    }
}
