use super::*;

fn ns(id: u64, own: bool, addrs: &[&str]) -> NamespaceView {
    NamespaceView {
        id: NetnsId(id),
        own,
        via_pid: (!own).then_some(100 + id as u32),
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        listeners: Vec::new(),
    }
}

fn listener(addr: &str) -> Listener {
    Listener {
        addr: addr.parse().unwrap(),
        inode: 1,
        accept_queue: 0,
        backlog: 128,
    }
}

fn target(ip: &str, client: Option<u64>) -> Option<Target> {
    Some(Target {
        ip: ip.parse().unwrap(),
        client_ns: client.map(NetnsId),
    })
}

#[test]
fn a_pod_ip_leads_to_the_pod_that_holds_it() {
    let node = ns(1, true, &["127.0.0.1", "10.0.0.5"]);
    let web = ns(2, false, &["127.0.0.1", "10.42.0.7", "fe80::1"]);
    let api = ns(3, false, &["127.0.0.1", "10.42.0.9"]);
    let (l_web, l_api) = (listener("0.0.0.0:8080"), listener("[::]:8080"));
    let candidates = [
        Found {
            listener: &l_web,
            ns: &web,
        },
        Found {
            listener: &l_api,
            ns: &api,
        },
    ];
    let t = target("10.42.0.9", Some(1));
    let (found, choice) = choose(&candidates, t).unwrap();
    assert_eq!((found.ns.id, choice), (NetnsId(3), Choice::Reached));
    assert_eq!(
        reached_at(found, choice, t),
        Some("10.42.0.9:8080".parse().unwrap())
    );
    // Nobody has the address: no listener is nginx's; the node's would be, if any.
    assert_eq!(
        choose(&candidates, target("10.42.0.99", None)).unwrap().1,
        Choice::Ambiguous(2)
    );
    let l_node = listener("0.0.0.0:8080");
    let with_node = [
        candidates[0],
        Found {
            listener: &l_node,
            ns: &node,
        },
    ];
    let (found, choice) = choose(&with_node, target("10.42.0.99", None)).unwrap();
    assert_eq!((found.ns.id, choice), (NetnsId(1), Choice::Own));
    assert_eq!(
        reached_at(found, choice, None),
        None,
        "the node's: old rules"
    );
}

#[test]
fn loopback_stays_in_the_client_s_namespace() {
    let node = ns(1, true, &["127.0.0.1"]);
    let pod = ns(2, false, &["127.0.0.1", "10.42.0.7"]);
    let (in_node, in_pod) = (listener("127.0.0.1:9000"), listener("127.0.0.1:9000"));
    let candidates = [
        Found {
            listener: &in_node,
            ns: &node,
        },
        Found {
            listener: &in_pod,
            ns: &pod,
        },
    ];
    let sidecar = target("127.0.0.1", Some(2));
    let (found, choice) = choose(&candidates, sidecar).unwrap();
    assert_eq!((found.ns.id, choice), (NetnsId(2), Choice::Reached));
    assert_eq!(
        reached_at(found, choice, sidecar),
        Some("127.0.0.1:9000".parse().unwrap())
    );
    let (found, _) = choose(&candidates, target("127.0.0.1", None)).unwrap();
    assert_eq!(found.ns.id, NetnsId(1), "client unknown: the agent's own");
}

#[test]
fn a_bound_address_beats_a_wildcard_and_wrong_binds_do_not_match() {
    let pod = ns(2, false, &["10.42.0.7", "10.42.0.8"]);
    let (wild, bound, other) = (
        listener("0.0.0.0:80"),
        listener("10.42.0.7:80"),
        listener("10.42.0.8:80"),
    );
    let candidates = [
        Found {
            listener: &wild,
            ns: &pod,
        },
        Found {
            listener: &other,
            ns: &pod,
        },
        Found {
            listener: &bound,
            ns: &pod,
        },
    ];
    let (found, _) = choose(&candidates, target("10.42.0.7", None)).unwrap();
    assert_eq!(found.listener.addr, "10.42.0.7:80".parse().unwrap());
}

#[test]
fn without_a_target_a_pod_listener_is_reached_at_its_pod_ip() {
    let pod = ns(
        2,
        false,
        &["127.0.0.1", "::1", "fe80::1", "fd00::7", "10.42.0.7"],
    );
    let v6 = listener("[::]:8080");
    let only = [Found {
        listener: &v6,
        ns: &pod,
    }];
    let (found, choice) = choose(&only, None).unwrap();
    assert_eq!(choice, Choice::Only);
    assert_eq!(
        reached_at(found, choice, None),
        Some("10.42.0.7:8080".parse().unwrap())
    );
    let lo = listener("127.0.0.1:8080");
    let (found, choice) = choose(
        &[Found {
            listener: &lo,
            ns: &pod,
        }],
        None,
    )
    .unwrap();
    assert_eq!(
        reached_at(found, choice, None),
        None,
        "loopback-only in a pod"
    );
    let v6_only = ns(3, false, &["::1", "fd00::8"]);
    let (found, choice) = choose(
        &[Found {
            listener: &v6,
            ns: &v6_only,
        }],
        None,
    )
    .unwrap();
    assert_eq!(
        reached_at(found, choice, None),
        Some("[fd00::8]:8080".parse().unwrap())
    );
    assert!(choose(&[], None).is_none());
}

#[test]
fn configured_literal_addresses_and_localhost_are_targets() {
    assert_eq!(host_ip("10.0.0.7:8080"), Some("10.0.0.7".parse().unwrap()));
    assert_eq!(host_ip("[fd00::7]:8080"), Some("fd00::7".parse().unwrap()));
    assert_eq!(
        host_ip("localhost:8080"),
        Some("127.0.0.1".parse().unwrap())
    );
    assert_eq!(host_ip("app.svc:8080"), None);
    let mut targets = Targets::default();
    let proc_root = Path::new("/proc");
    let configured = "10.0.0.7:8080".to_owned();
    let t = targets.resolve(proc_root, 8080, Some(&configured)).unwrap();
    assert_eq!(t.ip, "10.0.0.7".parse::<IpAddr>().unwrap());
    // A connect seen wins over the configuration; its client is the connecting process.
    targets.note_connect(std::process::id(), "10.42.0.9:8080".parse().unwrap());
    let t = targets.resolve(proc_root, 8080, Some(&configured)).unwrap();
    assert_eq!(t.ip, "10.42.0.9".parse::<IpAddr>().unwrap());
    assert_eq!(t.client_ns, netns_of(proc_root, std::process::id()));
    assert!(targets.resolve(proc_root, 8081, None).is_none());
}
