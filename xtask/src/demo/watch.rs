//! What the demo and the alert benchmark watch: the collector's alerts for the demo's own
//! upstreams (the agent watches every nginx on the node; others' alerts are not ours) and
//! the mails that name them, each with the time it was first seen here.
use std::{
    collections::BTreeSet,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use super::{
    mailbox::{self, Mail},
    shown,
};
use crate::{
    alert_view::{self, Alert, AlertState, Feed},
    interrupt,
    term::{Colour, Term},
};

/// Reading the Maildir starts a python process: not on every alert poll.
const MAIL_POLL_EVERY: Duration = Duration::from_millis(250);

pub enum Event {
    Alert(Box<Alert>),
    Mail(Mail),
}

pub struct Watch {
    pub collector_port: u16,
    maildir: PathBuf,
    upstreams: Vec<String>,
    feed: Feed,
    mails_seen: BTreeSet<PathBuf>,
    last_mail_poll: Option<Instant>,
    /// Every transition and mail of ours, with when this side saw it.
    pub alerts: Vec<(SystemTime, Alert)>,
    pub mails: Vec<(SystemTime, Mail)>,
}

impl Watch {
    pub fn new(collector_port: u16, maildir: PathBuf, upstreams: Vec<String>) -> Watch {
        Watch {
            collector_port,
            maildir,
            upstreams,
            feed: Feed::default(),
            mails_seen: BTreeSet::new(),
            last_mail_poll: None,
            alerts: Vec::new(),
            mails: Vec::new(),
        }
    }

    fn ours(&self, upstream: &str) -> bool {
        self.upstreams.iter().any(|u| u == upstream)
    }

    /// New transitions of our alerts and new mails naming our upstreams.
    pub fn poll(&mut self) -> anyhow::Result<Vec<Event>> {
        let listed = alert_view::fetch(self.collector_port)?;
        let ours: Vec<Alert> = listed
            .into_iter()
            .filter(|a| self.ours(&a.key.upstream))
            .collect();
        let now = SystemTime::now();
        let mut events = Vec::new();
        for a in self.feed.changes(ours) {
            self.alerts.push((now, a.clone()));
            events.push(Event::Alert(Box::new(a)));
        }
        if self
            .last_mail_poll
            .is_none_or(|t| t.elapsed() >= MAIL_POLL_EVERY)
        {
            self.last_mail_poll = Some(Instant::now());
            for mail in mailbox::read(&self.maildir)? {
                if !self.mails_seen.insert(mail.path.clone()) {
                    continue;
                }
                if self
                    .upstreams
                    .iter()
                    .any(|u| mail.subject.contains(&format!("{u} ")))
                {
                    self.mails.push((SystemTime::now(), mail.clone()));
                    events.push(Event::Mail(mail));
                }
            }
        }
        Ok(events)
    }

    /// Polls alerts and mails until `done`, with a progress line; every new transition and
    /// mail is shown when `show_events`. False after `limit`.
    pub fn wait(
        &mut self,
        term: &mut Term,
        label: &str,
        limit: Duration,
        show_events: bool,
        done: impl Fn(&Watch) -> bool,
    ) -> anyhow::Result<bool> {
        let start = Instant::now();
        term.new_progress();
        loop {
            interrupt::check()?;
            for event in self.poll()? {
                if show_events {
                    show(term, &event);
                }
            }
            if done(self) {
                term.clear_progress();
                return Ok(true);
            }
            if start.elapsed() > limit {
                term.clear_progress();
                return Ok(false);
            }
            let pending: Vec<String> = self
                .pending()
                .iter()
                .map(|a| format!("{} {}", a.key.cause, a.key.upstream))
                .collect();
            let detail = if pending.is_empty() {
                String::new()
            } else {
                format!("  (pending: {})", pending.join(", "))
            };
            term.progress(label, start.elapsed().as_secs_f64(), &detail);
            interrupt::sleep(Duration::from_millis(100))?;
        }
    }

    /// No alert of ours firing or pending in the last list.
    pub fn quiet(&self) -> bool {
        !self.feed.active().any(|k| self.ours(&k.upstream))
    }

    /// Our alerts pending now (seen, not yet for the `for` window).
    pub fn pending(&self) -> Vec<&Alert> {
        self.feed
            .pending()
            .iter()
            .filter(|a| self.ours(&a.key.upstream))
            .collect()
    }

    /// When `upstream` was first seen in `state` here, with the alert.
    pub fn seen(&self, upstream: &str, state: AlertState) -> Option<&(SystemTime, Alert)> {
        self.alerts
            .iter()
            .find(|(_, a)| a.key.upstream == upstream && a.state == state)
    }

    /// When the first mail naming `upstream` with `word` (FIRING, RESOLVED) arrived.
    pub fn mail_seen(&self, upstream: &str, word: &str) -> Option<&(SystemTime, Mail)> {
        self.mails
            .iter()
            .find(|(_, m)| m.subject.contains(&format!("{upstream} ")) && m.subject.contains(word))
    }

    /// Forgets what was seen (the benchmark's next run); transitions stay known.
    pub fn clear_seen(&mut self) {
        self.alerts.clear();
        self.mails.clear();
    }
}

fn show(term: &mut Term, event: &Event) {
    match event {
        Event::Alert(a) => {
            let text = alert_view::render(a, &term.style);
            term.line(&format!("\n{text}\n"));
        }
        Event::Mail(m) => {
            let tag = term.style.paint(Colour::Cyan, "mail");
            term.line(&format!(
                "  {tag}  {}\n        {}",
                shown(&m.path),
                m.subject
            ));
        }
    }
}
