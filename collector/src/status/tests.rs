use vigil_wire::{AgentHealth, Batch, ProcessIdentity, UpstreamStatus};

use super::*;

fn batch(node: &str, created: i64) -> Batch {
    Batch {
        node: node.to_owned(),
        created_unix_ms: created,
        ..Default::default()
    }
}

#[test]
fn escape_escapes_every_markup_character() {
    assert_eq!(
        escape(r#"<a href="x" title='y'>&</a>"#),
        "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
    );
    assert_eq!(escape("plain node-1"), "plain node-1");
}

#[test]
fn hostile_node_and_upstream_names_cannot_inject_markup() {
    let board = StatusBoard::default();
    let hostile = "<script>alert('x')</script>";
    let mut b = batch(hostile, 1);
    b.health = Some(AgentHealth {
        capabilities_missing: vec!["<img src=x onerror=y>".to_owned()],
        ..Default::default()
    });
    b.upstreams = vec![UpstreamStatus {
        port: 80,
        upstream: "\"><b>".to_owned(),
        owner: Some(ProcessIdentity {
            pid: 7,
            comm: "</td>".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }];
    board.observe_at(&b, 1);
    let html = render(&board.nodes(), &[]);
    for raw in [hostile, "<img", "\"><b>", "</td> (pid"] {
        assert!(!html.contains(raw), "{raw} unescaped in {html}");
    }
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("&lt;/td&gt; (pid 7)"), "{html}");
    assert_eq!(html.matches("<script").count(), 0);
}

#[test]
fn keeps_latest_health_and_last_non_empty_upstream_list() {
    let board = StatusBoard::default();
    let mut first = batch("n1", 10);
    first.upstreams = vec![UpstreamStatus {
        port: 8080,
        listening: true,
        ..Default::default()
    }];
    first.health = Some(AgentHealth {
        probe_events_lost: 3,
        ..Default::default()
    });
    board.observe_at(&first, 100);
    board.observe_at(&batch("n1", 20), 200);
    let nodes = board.nodes();
    assert_eq!(nodes.len(), 1);
    let n = &nodes[0].1;
    assert_eq!((n.last_batch_ms, n.arrived_ms), (20, 200));
    assert_eq!(
        n.upstreams.len(),
        1,
        "an empty list between samples keeps the last one"
    );
    assert_eq!(n.health.as_ref().unwrap().probe_events_lost, 3);
}

#[test]
fn bounded_drops_the_node_heard_from_longest_ago() {
    let board = StatusBoard::new(2);
    board.observe_at(&batch("old", 1), 1);
    board.observe_at(&batch("mid", 2), 2);
    board.observe_at(&batch("old", 3), 3);
    board.observe_at(&batch("new", 4), 4);
    let names: Vec<String> = board.nodes().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["new", "old"]);
}
