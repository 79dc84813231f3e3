//! The customer side of the live engine: an open population on one
//! simulation channel. Arrivals, next messages and abandonments are
//! scheduled in scenario time; every few milliseconds the due actions go
//! out as one batch (a request per 1000 actions, sent from its own task so
//! a slow target never holds up the schedule); one long-poll follows the
//! channel for assignments, replies and ends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{LiveOptions, Shared};
use crate::observe::{Obs, SessionInfo};
use crate::scenario::{MSG_TYPES, Scenario};
use crate::workload::{EntryBehaviour, unit};

/// How the customer side ended.
pub(crate) struct Outcome {
    pub(crate) sessions: u64,
    pub(crate) peak_in_flight: u64,
    pub(crate) interrupted: bool,
}

/// An action is late when it leaves this long after its scheduled time.
const LATE: Duration = Duration::from_millis(10);
/// Actions per batch request.
const BATCH: usize = 1000;

/// A sent batch: what each action was for, and the target's answers.
type BatchResult = (Vec<Meta>, Option<Vec<Value>>);

/// What an action in a batch was for; a message keeps its JSON for a resend.
type Meta = (u64, Due, Option<Value>);

/// Sends of one message before the customer gives up on it (with a pause
/// doubling from 100 ms of wall time between them).
const ATTEMPTS: u32 = 5;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Arrive(usize),
    Send(u64),
    Resend(u64),
    Leave(u64),
}

struct Cust {
    info: SessionInfo,
    handle: String,
    total: u32,
    sent: u32,
    sent_at: Vec<u64>,
    replied: Vec<bool>,
    queued: bool,
    assigned: Option<u32>,
    last_agent: Option<u32>,
    /// Messages the target accepted.
    accepted: u32,
    /// A message to send again, and how often it was sent.
    retry: Option<(Value, u32)>,
}

/// A returning customer's handle and their last agent and time.
struct Known {
    handle: String,
    agent: Option<u32>,
    at_us: u64,
}

struct Driver<'a> {
    sc: &'a Scenario,
    sh: &'a Arc<Shared>,
    entries: Vec<EntryBehaviour>,
    /// Each entry's contact-way scene.
    scenes: Vec<String>,
    heap: BinaryHeap<Reverse<(u64, u64, Due)>>,
    seq: u64,
    custs: HashMap<u64, Cust>,
    by_handle: HashMap<String, u64>,
    memory: Vec<Vec<Known>>,
    next_key: u64,
    channel: String,
    sessions: u64,
    peak: u64,
    arrivals_left: usize,
}

pub(crate) async fn drive(
    sc: &Scenario,
    sh: &Arc<Shared>,
    opts: &LiveOptions,
    interrupt: Arc<AtomicBool>,
) -> Outcome {
    let channel = match sh
        .http
        .post(
            "open_channel",
            "/sim/customer/open_channel",
            &json!({"queue_cap": 1_000_000}),
            Instant::now(),
            Duration::ZERO,
        )
        .await
    {
        Ok(v) => v["channel_id"].as_str().unwrap_or_default().to_owned(),
        Err(_) => String::new(),
    };
    let entries: Vec<EntryBehaviour> =
        sc.entries.iter().map(|e| EntryBehaviour::new(e, sc.seed, sc.duration_us)).collect();
    let scenes = sc
        .entries
        .iter()
        .map(|e| {
            e.name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
                .collect()
        })
        .collect();
    let mut d = Driver {
        sc,
        sh,
        arrivals_left: entries.len(),
        entries,
        scenes,
        heap: BinaryHeap::new(),
        seq: 0,
        custs: HashMap::new(),
        by_handle: HashMap::new(),
        memory: (0..sc.accounts.len()).map(|_| Vec::new()).collect(),
        next_key: 0,
        channel: channel.clone(),
        sessions: 0,
        peak: 0,
    };
    for e in 0..d.entries.len() {
        d.schedule_arrival(e);
    }
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Vec<Value>>();
    let (res_tx, mut res_rx) = mpsc::unbounded_channel::<BatchResult>();
    let puller = tokio::spawn(pull_channel(sh.clone(), channel, ev_tx));
    let mut interrupted = false;
    let mut drain_deadline: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let total_s = sc.duration_us / 1_000_000;
    let bar =
        if opts.progress { indicatif::ProgressBar::new(total_s) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed:>4} [{bar:30}] {pos}/{len} s of scenario time · {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    let mut shown = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if interrupt.load(Ordering::SeqCst) && !interrupted {
                    interrupted = true;
                    d.heap.retain(|Reverse((_, _, due))| !matches!(due, Due::Arrive(_)));
                    d.arrivals_left = 0;
                    drain_deadline = Some(Instant::now() + opts.drain.min(Duration::from_secs(5)));
                }
                d.dispatch(&res_tx);
                if shown.elapsed() >= Duration::from_millis(250) {
                    shown = Instant::now();
                    bar.set_position((sh.tb.now_us() / 1_000_000).min(total_s));
                    let p95 = sh.http.stats.p95_ms("customer_batch").map_or("—".into(), |v| format!("{v:.1} ms"));
                    bar.set_message(format!(
                        "{} in flight · {} errors · batch p95 {p95}",
                        d.custs.len(),
                        sh.http.stats.errors()
                    ));
                }
                if d.arrivals_left == 0 && drain_deadline.is_none() {
                    drain_deadline = Some(Instant::now() + opts.drain);
                }
                let drained = d.arrivals_left == 0 && d.custs.is_empty();
                if drained || drain_deadline.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
            }
            Some(events) = ev_rx.recv() => d.on_events(events),
            Some((actions, results)) = res_rx.recv() => d.on_results(actions, results),
        }
    }
    bar.finish_and_clear();
    // what is still waiting at the end never got an agent
    let end = sh.tb.now_us();
    for c in d.custs.values() {
        if c.assigned.is_none() && (c.queued || c.sent > 0) {
            let _ = sh.obs.send(Obs::Unfinished { t: end, s: c.info });
        }
    }
    puller.abort();
    Outcome { sessions: d.sessions, peak_in_flight: d.peak, interrupted }
}

/// Follow the channel's queue and hand its items to the driver.
async fn pull_channel(sh: Arc<Shared>, channel: String, tx: mpsc::UnboundedSender<Vec<Value>>) {
    let mut cursor = String::new();
    while !sh.stop.load(Ordering::SeqCst) {
        let body = json!({"channel_id": channel, "cursor": cursor, "limit": 1000, "timeout_ms": 500});
        match sh
            .http
            .post("customer_pull", "/sim/customer/pull", &body, Instant::now(), Duration::from_millis(500))
            .await
        {
            Ok(v) => {
                if let Some(c) = v["next_cursor"].as_str() {
                    cursor = c.to_owned();
                }
                let items = v["event_list"].as_array().cloned().unwrap_or_default();
                if !items.is_empty() && tx.send(items).is_err() {
                    return;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn msg_body(msgtype: u8, id: &str) -> (String, Value) {
    let t = MSG_TYPES[msgtype as usize];
    let content = match t {
        "text" => json!({"content": format!("kfsim message {id}")}),
        "image" | "voice" | "video" | "file" => json!({"media_id": format!("kfsim-{id}")}),
        "location" => json!({"latitude": 23.1, "longitude": 113.3, "name": "kfsim", "address": "kfsim"}),
        "link" => {
            json!({"title": "kfsim", "desc": "kfsim", "url": "https://example.com/kfsim", "pic_url": ""})
        }
        "business_card" => json!({"userid": "kfsim"}),
        _ => {
            json!({"title": "kfsim", "appid": "wx0000000000000000", "pagepath": "pages/index", "thumb_media_id": "kfsim"})
        }
    };
    (t.to_owned(), content)
}

impl Driver<'_> {
    fn push(&mut self, t: u64, due: Due) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, due)));
    }

    fn schedule_arrival(&mut self, e: usize) {
        let rt = &mut self.entries[e];
        match rt.arrivals.next(&mut rt.arrival_rng) {
            Some(t) => self.push(t, Due::Arrive(e)),
            None => self.arrivals_left -= 1,
        }
    }

    /// Send every action that is due, in batches.
    fn dispatch(&mut self, res_tx: &mpsc::UnboundedSender<BatchResult>) {
        let now = self.sh.tb.now_us();
        let mut actions: Vec<Value> = Vec::new();
        let mut meta: Vec<Meta> = Vec::new();
        let mut first_intended: Option<u64> = None;
        while let Some(Reverse((t, _, due))) = self.heap.peek().copied() {
            if t > now {
                break;
            }
            self.heap.pop();
            let before = actions.len();
            match due {
                Due::Arrive(e) => self.arrive(e, t, &mut actions, &mut meta),
                Due::Send(key) => self.send(key, t, &mut actions, &mut meta),
                Due::Resend(key) => {
                    if let Some((a, _)) = self.custs.get(&key).and_then(|c| c.retry.clone()) {
                        meta.push((key, Due::Send(key), Some(a.clone())));
                        actions.push(a);
                    }
                }
                Due::Leave(key) => self.leave(key, t, &mut actions, &mut meta),
            }
            if actions.len() > before {
                first_intended.get_or_insert(t);
                let lag = self.sh.tb.instant(t).elapsed();
                let mut c = self.sh.counts();
                c.lag.record(lag.as_micros() as u64);
                if lag > LATE {
                    c.late += 1;
                }
            }
            if actions.len() >= BATCH {
                self.flush(&mut actions, &mut meta, first_intended.take(), res_tx);
            }
        }
        self.flush(&mut actions, &mut meta, first_intended, res_tx);
    }

    fn flush(
        &self,
        actions: &mut Vec<Value>,
        meta: &mut Vec<Meta>,
        intended: Option<u64>,
        res_tx: &mpsc::UnboundedSender<BatchResult>,
    ) {
        if actions.is_empty() {
            return;
        }
        let body = json!({"channel_id": self.channel, "actions": std::mem::take(actions)});
        let meta = std::mem::take(meta);
        let sh = self.sh.clone();
        let res_tx = res_tx.clone();
        let intended = self.sh.tb.instant(intended.unwrap_or(0));
        tokio::spawn(async move {
            let r =
                sh.http.post("customer_batch", "/sim/customer/batch", &body, intended, Duration::ZERO).await;
            let results = r.ok().and_then(|v| v["results"].as_array().cloned());
            let _ = res_tx.send((meta, results));
        });
    }

    fn arrive(&mut self, e: usize, t: u64, actions: &mut Vec<Value>, meta: &mut Vec<Meta>) {
        self.schedule_arrival(e);
        let entry = &self.sc.entries[e];
        let account = entry.account;
        let rt = &mut self.entries[e];
        let back = rt.returning > 0.0 && unit(&mut rt.rng) < rt.returning && !self.memory[account].is_empty();
        let (handle, last_agent, returning) = if back {
            let i = ((unit(&mut rt.rng) * self.memory[account].len() as f64) as usize)
                .min(self.memory[account].len() - 1);
            let k = &self.memory[account][i];
            let within = self.sc.accounts[account].prefer_last_within_us;
            let eligible = k.agent.filter(|_| t.saturating_sub(k.at_us) <= within);
            (k.handle.clone(), eligible, true)
        } else {
            (String::new(), None, false)
        };
        // one session per customer at a time: a customer still in a
        // session comes back as a new one
        let handle = if back && !self.by_handle.contains_key(&handle) { handle } else { String::new() };
        let key = self.next_key;
        self.next_key += 1;
        let handle = if handle.is_empty() { format!("c{key}") } else { handle };
        let total = rt.messages.sample(&mut rt.rng);
        let msgtype = rt.mix.sample(&mut rt.rng);
        let patience = rt.patience.as_ref().map(|p| p.sample(&mut rt.rng));
        let info = SessionInfo { arrived_us: t, entry: e as u16, account: account as u16 };
        let returning = returning && handle != format!("c{key}");
        let _ = self.sh.obs.send(Obs::Entered {
            s: info,
            returning,
            sticky_eligible: returning && last_agent.is_some(),
            msgtype,
        });
        let kfid = self.sh.open_kfid[account].clone();
        actions
            .push(json!({"type": "enter", "customer": handle, "open_kfid": kfid, "scene": self.scenes[e]}));
        meta.push((key, Due::Arrive(e), None));
        self.custs.insert(
            key,
            Cust {
                info,
                handle: handle.clone(),
                total,
                sent: 0,
                sent_at: Vec::new(),
                replied: vec![false; total as usize],
                queued: false,
                assigned: None,
                last_agent: if returning { last_agent } else { None },
                accepted: 0,
                retry: None,
            },
        );
        self.by_handle.insert(handle, key);
        self.sessions += 1;
        self.peak = self.peak.max(self.custs.len() as u64);
        self.message(key, t, msgtype, actions, meta);
        if let Some(p) = patience {
            self.push(t.saturating_add(p), Due::Leave(key));
        }
    }

    fn message(&mut self, key: u64, t: u64, msgtype: u8, actions: &mut Vec<Value>, meta: &mut Vec<Meta>) {
        let Some(c) = self.custs.get_mut(&key) else { return };
        let idx = c.sent;
        c.sent += 1;
        c.sent_at.push(t);
        // the agent learns the session's length and the send time from the id
        let id = format!("m{key}-{idx}-{}-{t}", c.total);
        let (msgtype_name, content) = msg_body(msgtype, &id);
        let mut a = json!({"type": "message", "customer": c.handle, "open_kfid": self.sh.open_kfid[c.info.account as usize],
            "client_msgid": id, "msgtype": msgtype_name});
        a[msgtype_name.as_str()] = content;
        meta.push((key, Due::Send(key), Some(a.clone())));
        actions.push(a);
        if idx > 0 {
            let _ = self.sh.obs.send(Obs::Message { t, s: c.info, msgtype });
        }
    }

    fn send(&mut self, key: u64, t: u64, actions: &mut Vec<Value>, meta: &mut Vec<Meta>) {
        let Some(c) = self.custs.get(&key) else { return };
        let e = c.info.entry as usize;
        let rt = &mut self.entries[e];
        let msgtype = rt.mix.sample(&mut rt.rng);
        self.message(key, t, msgtype, actions, meta);
    }

    fn leave(&mut self, key: u64, _t: u64, actions: &mut Vec<Value>, meta: &mut Vec<Meta>) {
        let Some(c) = self.custs.get(&key) else { return };
        if c.assigned.is_some() {
            return;
        }
        actions.push(json!({"type": "leave", "customer": c.handle, "open_kfid": self.sh.open_kfid[c.info.account as usize]}));
        meta.push((key, Due::Leave(key), None));
    }

    fn on_results(&mut self, meta: Vec<Meta>, results: Option<Vec<Value>>) {
        let now = self.sh.tb.now_us();
        for (i, (key, due, action)) in meta.into_iter().enumerate() {
            let r = results.as_ref().and_then(|r| r.get(i));
            let ok = r.is_some_and(|r| r["errcode"].as_i64() == Some(0));
            if let Some(r) = r.filter(|_| !ok) {
                let code = r["errcode"].as_i64().unwrap_or(-1);
                self.sh.http.stats.action_error("customer_batch", format!("errcode_{code}"));
            }
            match due {
                Due::Send(_) if ok => {
                    let mut counts = self.sh.counts();
                    counts.sent += 1;
                    if let Some(c) = self.custs.get_mut(&key) {
                        c.accepted += 1;
                        c.retry = None;
                        // a message of a session an agent holds must reach it
                        if c.assigned.is_some() {
                            counts.expected += 1;
                        }
                    }
                }
                Due::Send(_) => self.send_failed(key, action, now),
                _ => {}
            }
        }
    }

    /// A message the target did not take. The first message of a session
    /// that never got in: the session was refused. A later one: the
    /// customer sends it again, a few times, then gives up on the session
    /// (it can neither go on nor leave a session an agent holds).
    fn send_failed(&mut self, key: u64, action: Option<Value>, now: u64) {
        let Some(c) = self.custs.get_mut(&key) else { return };
        if c.assigned.is_none() && !c.queued && c.accepted == 0 {
            let _ = self.sh.obs.send(Obs::Rejected { t: now, s: c.info });
            self.forget(key);
            return;
        }
        let attempts = c.retry.as_ref().map_or(1, |r| r.1) + 1;
        match action {
            Some(a) if attempts <= ATTEMPTS => {
                c.retry = Some((a, attempts));
                let pause = (0.1 * f64::from(1u32 << (attempts - 2)) * 1e6 * self.sh.tb.scale) as u64;
                self.push(now.saturating_add(pause), Due::Resend(key));
            }
            _ => self.forget(key),
        }
    }

    fn forget(&mut self, key: u64) {
        if let Some(c) = self.custs.remove(&key) {
            self.by_handle.remove(&c.handle);
        }
    }

    fn on_events(&mut self, events: Vec<Value>) {
        let now = self.sh.tb.now_us();
        for ev in events {
            let Some(handle) = ev["customer"].as_str() else { continue };
            let Some(&key) = self.by_handle.get(handle) else { continue };
            match ev["kind"].as_str() {
                Some("session") => self.on_session(key, &ev, now),
                Some("message") => self.on_reply(key, &ev, now),
                _ => {}
            }
        }
    }

    fn agent_of(&self, ev: &Value) -> Option<u32> {
        ev["servicer_userid"].as_str().and_then(|u| self.sh.agent_index.get(u).copied())
    }

    fn on_session(&mut self, key: u64, ev: &Value, now: u64) {
        let agent = self.agent_of(ev);
        let Some(c) = self.custs.get_mut(&key) else { return };
        let info = c.info;
        match ev["change"].as_str() {
            Some("queued") if c.assigned.is_none() => {
                c.queued = true;
                let _ = self.sh.obs.send(Obs::Queued { t: now, s: info });
            }
            Some("assigned") if c.assigned.is_none() => {
                let agent = agent.unwrap_or(u32::MAX);
                c.assigned = Some(agent);
                // the messages accepted so far must all reach the agent
                self.sh.counts().expected += u64::from(c.accepted);
                let kept = c.last_agent.is_some() && c.last_agent == Some(agent);
                let _ = self.sh.obs.send(Obs::Assigned { t: now, s: info, agent, kept, from_pool: c.queued });
            }
            Some("rejected") => {
                let _ = self.sh.obs.send(Obs::Rejected { t: now, s: info });
                self.forget(key);
            }
            Some("ended") => {
                match (c.assigned, ev["reason"].as_str()) {
                    (None, _) => {
                        let _ = self.sh.obs.send(Obs::Abandoned { t: now, s: info });
                    }
                    (Some(agent), _) => {
                        let _ = self.sh.obs.send(Obs::Ended { t: now, s: info, agent });
                        let account = info.account as usize;
                        let handle = c.handle.clone();
                        self.remember(account, handle, agent, now);
                    }
                }
                self.forget(key);
            }
            _ => {}
        }
    }

    fn remember(&mut self, account: usize, handle: String, agent: u32, now: u64) {
        let cap = self.sc.customer_memory as usize;
        let mem = &mut self.memory[account];
        if let Some(k) = mem.iter_mut().find(|k| k.handle == handle) {
            k.agent = Some(agent);
            k.at_us = now;
        } else if mem.len() < cap {
            mem.push(Known { handle, agent: Some(agent), at_us: now });
        } else {
            let i = (now as usize) % cap;
            mem[i] = Known { handle, agent: Some(agent), at_us: now };
        }
    }

    fn on_reply(&mut self, key: u64, ev: &Value, now: u64) {
        if ev["sender"].as_str() != Some("servicer") {
            return;
        }
        let agent = self.agent_of(ev).unwrap_or(u32::MAX);
        let Some(idx) = ev["in_reply_to"]
            .as_str()
            .and_then(|id| id.split('-').nth(1))
            .and_then(|i| i.parse::<u32>().ok())
        else {
            return;
        };
        let sent_wall = ev["client_msgid"]
            .as_str()
            .and_then(|id| id.rsplit('-').next())
            .and_then(|t| t.parse::<u64>().ok());
        let Some(c) = self.custs.get_mut(&key) else { return };
        let Some(replied) = c.replied.get_mut(idx as usize) else { return };
        if std::mem::replace(replied, true) {
            self.sh.counts().duplicated += 1;
            return;
        }
        if let Some(sent) = sent_wall {
            let wall_now = self.sh.tb.wall_us();
            self.sh.counts().to_customer.record(wall_now.saturating_sub(sent));
        }
        let info = c.info;
        let sent_us = c.sent_at.get(idx as usize).copied().unwrap_or(info.arrived_us);
        let _ = self.sh.obs.send(Obs::Reply { t: now, s: info, agent, index: idx, sent_us });
        if idx + 1 < c.total && idx + 1 == c.sent {
            let e = info.entry as usize;
            let rt = &mut self.entries[e];
            let think = rt.think.sample(&mut rt.rng);
            self.push(now.saturating_add(think), Due::Send(key));
        }
    }
}
