//! What the agent asks of the kernel: for each capability the programs that can serve it,
//! best first, and the struct offsets the probes read (looked up in BTF).
use vigil_agent_ebpf::setting;

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
                setting::SOCK_FIELDS,
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
                &[setting::SKB_LEN, setting::SKB_DATA],
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

/// (setting index, capability, [(struct, member)] whose offsets add up).
pub(super) type OffsetPath = (u32, &'static str, &'static [(&'static str, &'static str)]);

/// `struct sock` starts with its `sock_common`.
const SK_COMMON: (&str, &str) = ("sock", "__sk_common");

pub(super) const OFFSETS: &[OffsetPath] = &[
    (setting::SOCK_SK_ERR, "connect_errno", &[("sock", "sk_err")]),
    (
        setting::TASK_EXIT_CODE,
        "exit_status",
        &[("task_struct", "exit_code")],
    ),
    (
        setting::TCP_BYTES_SENT,
        "bytes_sent",
        &[("tcp_sock", "bytes_sent")],
    ),
    (
        setting::TCP_BYTES_RECEIVED,
        "bytes_received",
        &[("tcp_sock", "bytes_received")],
    ),
    (
        setting::SOCK_FAMILY,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_family")],
    ),
    (
        setting::SOCK_DPORT,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_dport")],
    ),
    (
        setting::SOCK_SPORT,
        "socket_fields",
        &[("inet_sock", "inet_sport")],
    ),
    (
        setting::SOCK_DADDR,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_daddr")],
    ),
    (
        setting::SOCK_SADDR,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_rcv_saddr")],
    ),
    (
        setting::SOCK_V6_DADDR,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_v6_daddr")],
    ),
    (
        setting::SOCK_V6_SADDR,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_v6_rcv_saddr")],
    ),
    (
        setting::SOCK_PROTOCOL,
        "socket_fields",
        &[("sock", "sk_protocol")],
    ),
    (setting::SKB_LEN, "segment_fields", &[("sk_buff", "len")]),
    (setting::SKB_DATA, "segment_fields", &[("sk_buff", "data")]),
];
