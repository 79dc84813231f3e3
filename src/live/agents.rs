//! The servicer side of the live engine: one task per agent, a closed
//! population. Each long-polls its own queue; for every customer message it
//! waits the sampled reply delay (scaled by the agent's slowdown at that
//! moment, and by the time scale), replies with `in_reply_to`, and after
//! the last message of the session waits the wrap-up and ends it. Shift
//! changes set the agent's reception status.
//!
//! Deliveries are checked here: the message id carries the session's key
//! and the message's index, so a message seen twice, or after a later one
//! of its session, is counted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Shared;
use crate::observe::Obs;
use crate::scenario::Scenario;
use crate::workload::{Stream, TimeSampler, stream};

/// A reply or an end, waiting to leave in the next servicer batch.
struct Out {
    action: Value,
    intended: Instant,
    /// For an end: the agent's load to lower, and its index.
    ends: Option<(Arc<std::sync::atomic::AtomicU32>, u32)>,
}

struct Agent {
    outbox: mpsc::UnboundedSender<Out>,
    userid: String,
    index: u32,
    reply: TimeSampler,
    wrap_up: TimeSampler,
    slowdown: f64,
    rng: Stream,
    shifts: Vec<(u64, u64)>,
}

/// Start every agent's task.
pub(crate) fn spawn_all(sc: &Scenario, sh: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    let (outbox, rx) = mpsc::unbounded_channel();
    // not awaited at the end: replies still sleeping then are past the run
    tokio::spawn(send_batches(rx, sh.clone()));
    let mut tasks = Vec::new();
    let mut index = 0u32;
    for g in &sc.groups {
        let width = g.count.to_string().len().max(2);
        for n in 1..=g.count {
            let userid = format!("{}-{:0width$}", g.group, n);
            let agent = Agent {
                outbox: outbox.clone(),
                rng: stream(sc.seed, &format!("replies/{userid}")),
                userid,
                index,
                reply: TimeSampler::new(&g.reply_delay),
                wrap_up: TimeSampler::new(&g.wrap_up),
                slowdown: g.slowdown,
                shifts: g.online.clone(),
            };
            tasks.push(tokio::spawn(run_agent(agent, sh.clone())));
            index += 1;
        }
    }
    tasks
}

async fn run_agent(mut a: Agent, sh: Arc<Shared>) {
    let load = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let shifts = std::mem::take(&mut a.shifts);
    if shifts.is_empty() {
        let _ = sh.obs.send(Obs::AgentOnline { t: 0, agent: a.index, online: true });
    } else {
        tokio::spawn(run_shifts(a.userid.clone(), a.index, shifts, sh.clone()));
    }
    let mut cursor = String::new();
    while !sh.stop.load(Ordering::SeqCst) {
        let body = json!({"servicer_userid": a.userid, "cursor": cursor, "limit": 1000, "timeout_ms": 500});
        let v = match sh
            .http
            .post("servicer_pull", "/sim/servicer/pull", &body, Instant::now(), Duration::from_millis(500))
            .await
        {
            Ok(v) => v,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Some(c) = v["next_cursor"].as_str() {
            cursor = c.to_owned();
        }
        for ev in v["event_list"].as_array().into_iter().flatten() {
            handle(&mut a, &sh, &load, ev);
        }
    }
}

fn handle(a: &mut Agent, sh: &Arc<Shared>, load: &Arc<std::sync::atomic::AtomicU32>, ev: &Value) {
    let now = sh.tb.now_us();
    match (ev["kind"].as_str(), ev["change"].as_str()) {
        (Some("session"), Some("assigned")) => {
            let l = load.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = sh.obs.send(Obs::AgentLoad { t: now, agent: a.index, load: l });
        }
        (Some("session"), Some("transferred" | "ended")) if ev["reason"].as_str() != Some("servicer") => {
            // taken away by someone else; our own ends are counted where we end
            let l = load.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
            let _ = sh.obs.send(Obs::AgentLoad { t: now, agent: a.index, load: l });
        }
        (Some("message"), _) if ev["sender"].as_str() == Some("customer") => on_message(a, sh, load, ev, now),
        _ => {}
    }
}

/// `m{key}-{idx}-{total}-{sent_us}` → (key, idx, total, sent scenario µs).
fn parse_id(id: &str) -> Option<(u64, u32, u32, u64)> {
    let mut parts = id.strip_prefix('m')?.split('-');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

fn on_message(
    a: &mut Agent,
    sh: &Arc<Shared>,
    load: &Arc<std::sync::atomic::AtomicU32>,
    ev: &Value,
    now: u64,
) {
    let Some(id) = ev["client_msgid"].as_str() else { return };
    let Some((key, idx, total, sent_us)) = parse_id(id) else { return };
    {
        let mut seen = sh.seen.lock().unwrap_or_else(|e| e.into_inner());
        let s = seen.entry(key).or_insert_with(|| vec![false; total as usize]);
        let mut c = sh.counts();
        match s.get_mut(idx as usize) {
            Some(slot) if *slot => c.duplicated += 1,
            Some(slot) => {
                *slot = true;
                c.delivered += 1;
                if s[idx as usize + 1..].iter().any(|x| *x) {
                    c.reordered += 1;
                }
            }
            None => return,
        }
        c.to_agent.record((now.saturating_sub(sent_us) as f64 / sh.tb.scale) as u64);
        if idx + 1 == total {
            seen.remove(&key);
        }
    }
    let j = load.load(Ordering::SeqCst).max(1);
    let work = a.reply.sample(&mut a.rng) as f64 * (1.0 + a.slowdown * f64::from(j - 1));
    let wrap = if idx + 1 == total { Some(a.wrap_up.sample(&mut a.rng)) } else { None };
    let delay = sh.tb.wall(work as u64);
    let (userid, agent, outbox) = (a.userid.clone(), a.index, a.outbox.clone());
    let (kfid, external) = (ev["open_kfid"].clone(), ev["external_userid"].clone());
    let in_reply_to = id.to_owned();
    let load = load.clone();
    let tb = sh.tb;
    tokio::spawn(async move {
        let intended = Instant::now() + delay;
        tokio::time::sleep(delay).await;
        let reply_id = format!("r{key}-{idx}-{}", tb.wall_us());
        let action = json!({"type": "reply", "servicer_userid": userid, "open_kfid": kfid, "external_userid": external,
            "msgtype": "text", "text": {"content": format!("kfsim reply to {in_reply_to}")},
            "in_reply_to": in_reply_to, "client_msgid": reply_id});
        let _ = outbox.send(Out { action, intended, ends: None });
        let Some(wrap) = wrap else { return };
        let wait = tb.wall(wrap);
        let intended = Instant::now() + wait;
        tokio::time::sleep(wait).await;
        let action =
            json!({"type": "end", "servicer_userid": userid, "open_kfid": kfid, "external_userid": external});
        let _ = outbox.send(Out { action, intended, ends: Some((load, agent)) });
    });
}

/// Send the agents' replies and ends in batches of up to 1000 every few
/// milliseconds (one request per action would need a connection each under
/// load), several batches in flight at once.
async fn send_batches(mut rx: mpsc::UnboundedReceiver<Out>, sh: Arc<Shared>) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(8));
    while let Some(first) = rx.recv().await {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let sh = sh.clone();
        tokio::spawn(async move {
            let intended = batch.iter().map(|o| o.intended).min().unwrap_or_else(Instant::now);
            let actions: Vec<&Value> = batch.iter().map(|o| &o.action).collect();
            let body = json!({ "actions": actions });
            let r =
                sh.http.post("servicer_batch", "/sim/servicer/batch", &body, intended, Duration::ZERO).await;
            let results = r.ok().and_then(|v| v["results"].as_array().cloned());
            for (i, o) in batch.into_iter().enumerate() {
                let code = results.as_ref().and_then(|r| r.get(i)).and_then(|r| r["errcode"].as_i64());
                match code {
                    Some(0) => {
                        if let Some((load, agent)) = o.ends {
                            let l = load.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
                            let _ = sh.obs.send(Obs::AgentLoad { t: sh.tb.now_us(), agent, load: l });
                        }
                    }
                    Some(c) => sh.http.stats.action_error("servicer_batch", format!("errcode_{c}")),
                    None => {}
                }
            }
            drop(permit);
        });
    }
}

/// Set the agent's status at each shift boundary.
async fn run_shifts(userid: String, agent: u32, shifts: Vec<(u64, u64)>, sh: Arc<Shared>) {
    let set = |online: bool| {
        let sh = sh.clone();
        let userid = userid.clone();
        async move {
            let body =
                json!({"servicer_userid": userid, "status": if online { 0 } else { 1 }, "stop_type": 0});
            let _ = sh
                .http
                .post("set_status", "/sim/servicer/set_status", &body, Instant::now(), Duration::ZERO)
                .await;
            let _ = sh.obs.send(Obs::AgentOnline { t: sh.tb.now_us(), agent, online });
        }
    };
    if shifts.first().is_some_and(|s| s.0 > 0) {
        set(false).await;
    }
    for (from, to) in shifts {
        tokio::time::sleep_until(sh.tb.instant(from).into()).await;
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        set(true).await;
        tokio::time::sleep_until(sh.tb.instant(to).into()).await;
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        set(false).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn message_ids_round_trip() {
        assert_eq!(super::parse_id("m12-3-5-987654"), Some((12, 3, 5, 987_654)));
        assert_eq!(super::parse_id("r12-3-5"), None);
        assert_eq!(super::parse_id("m12-x-5-1"), None);
    }
}
