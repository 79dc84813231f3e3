//! The bot tier (智能助手) of accounts with `[account.bot]`, played by the
//! driver through the enterprise API as a middleware would. The target runs
//! those accounts API-managed (a new session stays in state 0); the
//! customer side tells the bot of each bot-turn message the target took,
//! and the bot answers it after its `reply_delay` with `kf/send_msg`
//! (0 → 1). After the last turn it resolves the session
//! (`service_state/trans` → 4, which the reference service allows from 1)
//! or hands it to people (→ 2: the account's pool, under its rules).
//!
//! A session's plan (turns, resolved or not, each answer's delay) is drawn
//! from `bot/<account>` in the simulator's order: turns, resolution and the
//! first delay at arrival, one more delay with each later message. The
//! customer side needs the plan to know its messages, so it draws it and
//! owns the bot: both run in its task, on its timer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use super::http::CallError;
use super::{Shared, Timed, Tries};
use crate::scenario::Scenario;
use crate::workload::{CountSampler, Stream, TimeSampler, stream, unit};

/// A bot session's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Customer messages the bot answers.
    pub(crate) turns: u32,
    /// The bot resolves the session after its last answer (else it hands
    /// it over).
    pub(crate) resolves: bool,
    /// The delay of the answer to the first message [scenario µs].
    pub(crate) delay: u64,
}

struct AccountBot {
    reply: TimeSampler,
    resolve: f64,
    turns: CountSampler,
    rng: Stream,
}

/// What the bot does once its answer is through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Waits for the customer's next message.
    Wait,
    /// Ends the session (→ 4).
    Resolve,
    /// Hands the session to people (→ 2).
    HandOver,
}

/// One API call of the bot, with what follows it.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    key: u64,
    idx: u32,
    account: usize,
    external_userid: String,
    then: Then,
    /// The answer is through: this is the `trans` after it.
    trans: bool,
    tries: Tries,
    /// The run's epoch it belongs to: a target that forgot the run's
    /// channels forgot its session too.
    epoch: u64,
}

/// `service_state/trans` → 2 with the account's pool full.
const POOL_FULL: i64 = 45009;

/// A call that came back: the job, the target's errcode if it answered
/// (`None`: no answer, it may not have arrived), and when it went out
/// (scenario µs).
pub(crate) type Done = (Job, Option<i64>, u64);

/// The bots of a run's accounts.
pub(crate) struct Bots {
    accounts: Vec<Option<AccountBot>>,
    heap: BinaryHeap<Reverse<Timed<Job>>>,
    seq: u64,
    /// Makes the bot's msgids unique on a target that outlives this run
    /// (they must be new within an account).
    run: String,
    /// The run's epoch the bots answer in ([`Bots::relink`]).
    epoch: u64,
}

impl Bots {
    /// The bots of `sc`'s accounts; none when `play` is off (a middleware
    /// is the bot). `run` is a token of this run (the customer channel's
    /// id).
    pub(crate) fn new(sc: &Scenario, play: bool, run: &str) -> Bots {
        let accounts = sc
            .accounts
            .iter()
            .map(|a| {
                let b = a.bot.as_ref().filter(|_| play)?;
                Some(AccountBot {
                    reply: TimeSampler::new(&b.reply_delay),
                    resolve: b.resolve,
                    turns: CountSampler::new(&b.turns),
                    rng: stream(sc.seed, &format!("bot/{}", a.name)),
                })
            })
            .collect();
        let run = run.chars().rev().take(8).collect::<String>().chars().rev().collect();
        Bots { accounts, heap: BinaryHeap::new(), seq: 0, run, epoch: 0 }
    }

    /// The plan of a new session of `account`, if the account has a bot.
    pub(crate) fn plan(&mut self, account: usize) -> Option<Plan> {
        let b = self.accounts.get_mut(account)?.as_mut()?;
        let turns = b.turns.sample(&mut b.rng).max(1);
        let resolves = b.resolve > 0.0 && unit(&mut b.rng) < b.resolve;
        let delay = b.reply.sample(&mut b.rng);
        Some(Plan { turns, resolves, delay })
    }

    /// The delay of the bot's answer to a later message of a session.
    pub(crate) fn delay(&mut self, account: usize) -> u64 {
        self.accounts[account].as_mut().map_or(0, |b| b.reply.sample(&mut b.rng))
    }

    /// The msgid of the answer to message `idx` of session `key`: new for
    /// every answer of every run ([`Bots::turn_of`] reads it back).
    pub(crate) fn msgid(&self, key: u64, idx: u32) -> String {
        format!("{}-{key:x}-{idx}", self.run)
    }

    /// The message of session `key` that the answer with `msgid` was to,
    /// if it is one of these bots' answers ([`Bots::msgid`]).
    pub(crate) fn turn_of(&self, key: u64, msgid: &str) -> Option<u32> {
        let rest = msgid.strip_prefix(self.run.as_str())?.strip_prefix('-')?;
        let (k, idx) = rest.split_once('-')?;
        (u64::from_str_radix(k, 16).ok()? == key).then_some(())?;
        idx.parse().ok()
    }

    /// Answer message `idx` of session `key` (customer `external_userid`
    /// of `account`) at scenario time `at`, then do `then`.
    pub(crate) fn answer(
        &mut self,
        key: u64,
        idx: u32,
        account: usize,
        external_userid: String,
        at: u64,
        then: Then,
    ) {
        let tries = Tries::default();
        let job = Job { key, idx, account, external_userid, then, trans: false, tries, epoch: self.epoch };
        self.push(at, job);
    }

    fn push(&mut self, t: u64, job: Job) {
        self.seq += 1;
        self.heap.push(Reverse(Timed { t, seq: self.seq, item: job }));
    }

    /// The run moved to `epoch` (the target forgot its channels and every
    /// session with them): nothing planned for the old sessions is sent,
    /// and what comes back for them is dropped.
    pub(crate) fn relink(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.heap.clear();
    }

    /// When the next call is due (scenario µs).
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(t)| t.t)
    }

    /// Send every call due at `now`, each from its own task (WeCom's API
    /// has no batches); their outcomes come back on `done`.
    pub(crate) fn dispatch(&mut self, now: u64, sh: &Arc<Shared>, done: &mpsc::UnboundedSender<Done>) {
        while self.heap.peek().is_some_and(|Reverse(t)| t.t <= now) {
            let Some(Reverse(Timed { t, item: job, .. })) = self.heap.pop() else { break };
            if !sh.may_resend(&job.tries, now) {
                self.gave_up(sh, job, now);
                continue;
            }
            let kfid = sh.link().open_kfid[job.account].clone();
            let (endpoint, path, body) = if job.trans {
                let to = if job.then == Then::Resolve { 4 } else { 2 };
                let body =
                    json!({"open_kfid": kfid, "external_userid": job.external_userid, "service_state": to});
                ("service_state_trans", "/cgi-bin/kf/service_state/trans", body)
            } else {
                let body = json!({
                    "touser": job.external_userid,
                    "open_kfid": kfid,
                    "msgid": self.msgid(job.key, job.idx),
                    "msgtype": "text",
                    "text": {"content": format!("kfsim bot answer {}", job.idx)},
                });
                ("send_msg", "/cgi-bin/kf/send_msg", body)
            };
            let (sh, done) = (sh.clone(), done.clone());
            let intended = sh.tb.instant(t);
            tokio::spawn(async move {
                let r = sh.http.post(endpoint, path, &body, intended, Duration::ZERO).await;
                let answer = match r {
                    Ok(_) => Some(0),
                    Err(CallError::Errcode(c)) => Some(c),
                    // without an answer it may not have arrived: sent again
                    Err(
                        CallError::Timeout | CallError::Connect(_) | CallError::Broken(_) | CallError::Cut,
                    ) => None,
                    Err(CallError::Status(s)) if s >= 500 => None,
                    Err(_) => Some(-1),
                };
                let _ = done.send((job, answer, now));
            });
        }
    }

    /// A call came back. One without an answer is sent again (a resent
    /// answer that had arrived is refused as a reused msgid, a resent
    /// `trans` as a transition not allowed: either way it is through) for
    /// the resend budget; an answered one, refused or not, is through, and
    /// what follows it is due now: the bot holds to its plan.
    pub(crate) fn on_done(&mut self, sh: &Shared, (mut job, answer, sent): Done, now: u64) {
        if job.epoch != self.epoch {
            return;
        }
        if answer.is_none() {
            match sh.resend_at(&mut job.tries, sent, now) {
                Some(t) => self.push(t, job),
                None => self.gave_up(sh, job, now),
            }
            return;
        }
        if job.trans && job.then == Then::HandOver && answer == Some(POOL_FULL) {
            // people cannot take it: the bot ends it (the customer side
            // counts it refused, as the simulator does)
            job.then = Then::Resolve;
            job.tries = Tries::default();
            self.push(now, job);
            return;
        }
        self.then(job, now);
    }

    fn gave_up(&mut self, sh: &Shared, job: Job, now: u64) {
        sh.counts().gave_up.bot += 1;
        self.then(job, now);
    }

    fn then(&mut self, mut job: Job, now: u64) {
        if !job.trans && job.then != Then::Wait {
            job.trans = true;
            job.tries = Tries::default();
            self.push(now, job);
        }
    }
}

/// When to wake for the bot's next call: at it, plus the gathering
/// allowance the customer side gives its own actions.
pub(crate) fn wake(bots: &Bots, sh: &Shared) -> Option<Instant> {
    bots.next_due().map(|t| sh.tb.instant(t) + sh.gather)
}
