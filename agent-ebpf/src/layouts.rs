//! Field offsets of the classic tracepoints the probes read, from each event's `format` file
//! under tracefs. The probes use the constants; the agent checks them against the running
//! kernel's format files before attaching and skips a probe whose layout differs.

pub mod inet_sock_set_state {
    pub const SKADDR: usize = 8;
    pub const OLDSTATE: usize = 16;
    pub const NEWSTATE: usize = 20;
    pub const SPORT: usize = 24;
    pub const DPORT: usize = 26;
    pub const FAMILY: usize = 28;
    pub const PROTOCOL: usize = 30;
    pub const SADDR: usize = 32;
    pub const DADDR: usize = 36;
    pub const SADDR_V6: usize = 40;
    pub const DADDR_V6: usize = 56;
}
pub mod tcp_probe {
    pub const DATA_LEN: usize = 76;
    pub const SKADDR: usize = 128;
}
pub mod sched_process_exit {
    pub const GROUP_DEAD: usize = 32;
}

/// (category, event, [(field, offset)]) for the agent's layout check.
pub type Layout = (&'static str, &'static str, &'static [(&'static str, usize)]);

pub const LAYOUTS: &[Layout] = &[
    (
        "sock",
        "inet_sock_set_state",
        &[
            ("skaddr", inet_sock_set_state::SKADDR),
            ("oldstate", inet_sock_set_state::OLDSTATE),
            ("newstate", inet_sock_set_state::NEWSTATE),
            ("sport", inet_sock_set_state::SPORT),
            ("dport", inet_sock_set_state::DPORT),
            ("family", inet_sock_set_state::FAMILY),
            ("protocol", inet_sock_set_state::PROTOCOL),
            ("saddr", inet_sock_set_state::SADDR),
            ("daddr", inet_sock_set_state::DADDR),
            ("saddr_v6", inet_sock_set_state::SADDR_V6),
            ("daddr_v6", inet_sock_set_state::DADDR_V6),
        ],
    ),
    (
        "tcp",
        "tcp_probe",
        &[
            ("data_len", tcp_probe::DATA_LEN),
            ("skaddr", tcp_probe::SKADDR),
        ],
    ),
    (
        "sched",
        "sched_process_exit",
        &[("group_dead", sched_process_exit::GROUP_DEAD)],
    ),
];
