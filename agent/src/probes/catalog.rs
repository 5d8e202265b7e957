//! What the agent asks of the kernel: for each capability the programs that can serve it,
//! best first. (The struct offsets they read, and where BTF has them, are in
//! `vigil_agent_ebpf::offsets`.)
use vigil_agent_ebpf::offsets;

pub(super) enum Attach {
    Classic(&'static str, &'static str),
    Raw(&'static str),
}

/// One way to get a capability: a program, where it attaches, and the BTF offsets it needs.
pub(super) struct ProbeOption {
    pub program: &'static str,
    pub attach: Attach,
    pub needs: &'static [u32],
}

impl ProbeOption {
    const fn raw(program: &'static str, event: &'static str, needs: &'static [u32]) -> Self {
        ProbeOption {
            program,
            attach: Attach::Raw(event),
            needs,
        }
    }

    const fn classic(program: &'static str, category: &'static str, event: &'static str) -> Self {
        ProbeOption {
            program,
            attach: Attach::Classic(category, event),
            needs: &[],
        }
    }
}

/// The capability whose loss stops the agent: without it no connect is seen.
pub(super) const CORE_CAPABILITY: &str = "connect_outcomes";

/// Each capability with its options, best first: raw tracepoints skip building the
/// tracepoint record (cheaper on every socket) but some need offsets from BTF.
pub(super) const PROBES_BY_CAPABILITY: &[(&str, &[ProbeOption])] = &[
    (
        CORE_CAPABILITY,
        &[
            ProbeOption::raw(
                "inet_sock_set_state_raw",
                "inet_sock_set_state",
                offsets::SOCK_FIELDS,
            ),
            ProbeOption::classic("inet_sock_set_state", "sock", "inet_sock_set_state"),
        ],
    ),
    (
        "syn_retransmits",
        &[ProbeOption::raw(
            "tcp_retransmit_skb",
            "tcp_retransmit_skb",
            &[],
        )],
    ),
    (
        "resets_received",
        &[ProbeOption::raw(
            "tcp_receive_reset",
            "tcp_receive_reset",
            &[],
        )],
    ),
    (
        "resets_sent",
        &[ProbeOption::raw("tcp_send_reset", "tcp_send_reset", &[])],
    ),
    (
        "request_sent_time",
        &[ProbeOption::raw(
            "tcp_sendmsg_locked",
            "tcp_sendmsg_locked",
            &[],
        )],
    ),
    (
        "first_byte",
        &[
            ProbeOption::raw(
                "tcp_probe_raw",
                "tcp_probe",
                &[offsets::SKB_LEN, offsets::SKB_DATA],
            ),
            ProbeOption::classic("tcp_probe", "tcp", "tcp_probe"),
        ],
    ),
    (
        "owner_exits",
        &[ProbeOption::classic(
            "sched_process_exit",
            "sched",
            "sched_process_exit",
        )],
    ),
];
