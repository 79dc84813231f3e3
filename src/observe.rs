//! The one stream of observations that every engine emits and `metrics`
//! folds, and what an engine says about its run as a whole: which engine
//! ([`Engine`]), where it is ([`Progress`]) and how it ended ([`RunStats`]).
//!
//! An observation carries everything its consumer needs about the session
//! ([`SessionInfo`]), so that the metrics keep no per-session state and their
//! memory does not grow with the number of sessions simulated.
//!
//! This module sits at the bottom of the crate with `scenario`: it imports
//! nothing of kfsim, so every engine and every consumer can share it.

use serde::{Deserialize, Serialize};

/// Which engine ran a scenario (`"sim"` or `"live"` in `summary.json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Discrete-event simulation in virtual time.
    #[default]
    Sim,
    /// Real time over HTTP against a running service.
    Live,
}

impl Engine {
    /// The name written in summaries and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sim => "sim",
            Engine::Live => "live",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Engine {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How a run ended and how much it did, as every engine reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Scenario time when the run stopped [µs] (at least the duration,
    /// unless it was interrupted).
    pub end_us: u64,
    /// Events processed (including stale ones dropped); the simulator's
    /// measure of work, 0 for an engine that has no event queue.
    pub events: u64,
    /// Sessions that arrived, warm-up included.
    pub sessions: u64,
    /// Most sessions in flight at once.
    pub peak_in_flight: u64,
    /// Arrivals the simulator refused because its bound on sessions in
    /// flight was reached (observed as rejected).
    pub shed: u64,
    /// The run was asked to stop before the end.
    pub interrupted: bool,
    /// The simulator's clock reached its horizon (`sim::HORIZON_US`) with
    /// sessions still open: the run stopped there, as at a drain's end.
    pub horizon: bool,
}

/// Where a run is, for a progress display. An engine calls its progress
/// callback with one now and then; the callback answers whether to go on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    /// Scenario time [µs].
    pub now_us: u64,
    /// Sessions that arrived so far.
    pub sessions: u64,
    /// Sessions in flight.
    pub in_flight: u64,
    /// Live engine: failed calls to the target so far.
    pub errors: Option<u64>,
    /// Live engine: the 95th percentile of the customers' batch calls [ms].
    pub call_p95_ms: Option<f64>,
    /// Live engine: the arrivals are over and the run waits for the
    /// sessions still open.
    pub ending: Option<Ending>,
}

/// A live run's wait after its last arrival: for the sessions still open
/// to end (the drain), then for the calls in flight to be answered.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ending {
    /// Sessions still open.
    pub open: u64,
    /// How long it has waited so far (wall time).
    pub waited: std::time::Duration,
    /// How much longer it waits at most (wall time), the calls in flight
    /// included.
    pub at_most: std::time::Duration,
    /// The target has taken no connection this long (wall time), each
    /// refused or not answered: the wait is over, as no session can end
    /// through a target that is down.
    pub target_down_for: Option<std::time::Duration>,
}

/// What every observation knows about its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// When the customer's first message arrived [µs].
    pub arrived_us: u64,
    /// When the session reached people for its current handle [µs]: the
    /// arrival, a bot's hand-over, or a transfer. Waits are measured from it.
    pub human_us: u64,
    /// Index of the entry point in the scenario.
    pub entry: u16,
    /// Index of the account whose pool or agents the session is with.
    pub account: u16,
    /// 0 for the customer's first handle by people; one more after each
    /// transfer (转接).
    pub handle: u8,
    /// With its account's bot (智能助手), not yet handed to people: a
    /// session refused now (shed at arrival, or never taken by the target)
    /// is the bot's refusal, not people's, and not one the bot still holds.
    pub bot: bool,
}

impl SessionInfo {
    /// A session that arrived at `arrived_us` and goes to people at once.
    pub fn new(arrived_us: u64, entry: u16, account: u16) -> SessionInfo {
        SessionInfo { arrived_us, human_us: arrived_us, entry, account, handle: 0, bot: false }
    }

    /// A session that arrived at `arrived_us`, with the account's bot if
    /// `bot`.
    pub fn arriving(arrived_us: u64, entry: u16, account: u16, bot: bool) -> SessionInfo {
        SessionInfo { bot, ..SessionInfo::new(arrived_us, entry, account) }
    }
}

/// Something that happened at time `t` [µs].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Obs {
    /// A customer arrived and sent the first message (state 0).
    Entered {
        /// The session.
        s: SessionInfo,
        /// The customer was seen before in this run.
        returning: bool,
        /// Returning, and the last agent served them within
        /// `prefer_last_within`.
        sticky_eligible: bool,
        /// Message type of the first message (index into `MSG_TYPES`).
        msgtype: u8,
    },
    /// Put in the waiting pool (state 2).
    Queued {
        /// When.
        t: u64,
        /// The session.
        s: SessionInfo,
    },
    /// Refused because the pool was full.
    Rejected {
        /// When.
        t: u64,
        /// The session.
        s: SessionInfo,
    },
    /// Given to an agent (state 3).
    Assigned {
        /// When.
        t: u64,
        /// The session.
        s: SessionInfo,
        /// Global index of the agent.
        agent: u32,
        /// It was the agent of the customer's last session.
        kept: bool,
        /// It left the waiting pool (it was `Queued` before).
        from_pool: bool,
    },
    /// Left the pool before an agent took it.
    Abandoned {
        /// When.
        t: u64,
        /// The session.
        s: SessionInfo,
    },
    /// A further customer message (the first is part of `Entered`).
    Message {
        /// When.
        t: u64,
        /// The session.
        s: SessionInfo,
        /// Message type (index into `MSG_TYPES`).
        msgtype: u8,
    },
    /// The agent answered the customer message sent at `sent_us`.
    Reply {
        /// When.
        t: u64,
        /// The session.
        s: SessionInfo,
        /// Global index of the agent.
        agent: u32,
        /// 0 for the first message of the session.
        index: u32,
        /// When the message being answered was sent.
        sent_us: u64,
        /// The first answer the customer got in this session (a bot may
        /// have answered before).
        first: bool,
    },
    /// A bot (智能助手: a middleware's `send_msg`) answered the customer.
    BotReply {
        /// When.
        t: u64,
        /// The session.
        s: SessionInfo,
        /// The first answer the customer got in this session.
        first: bool,
    },
    /// The bot handed the session to people (state 1 → 2); `s.human_us`
    /// is now. What follows is routed like an arrival.
    Handoff {
        /// When.
        t: u64,
        /// The session.
        s: SessionInfo,
    },
    /// The bot resolved the session: it ends in state 1 (→ 4).
    BotEnded {
        /// When.
        t: u64,
        /// The session.
        s: SessionInfo,
    },
    /// 转接: `agent` passed the session to account `to`. `s` is the handle
    /// that ends here; the next one (account `to`, `handle + 1`) is routed
    /// like an arrival.
    Transferred {
        /// When.
        t: u64,
        /// The session, as it was with `agent`.
        s: SessionInfo,
        /// Global index of the agent.
        agent: u32,
        /// Index of the account that takes it.
        to: u16,
    },
    /// The agent ended the session (state 4).
    Ended {
        /// When.
        t: u64,
        /// The session.
        s: SessionInfo,
        /// Global index of the agent.
        agent: u32,
    },
    /// Still waiting when the run stopped.
    Unfinished {
        /// When the run stopped.
        t: u64,
        /// The session.
        s: SessionInfo,
    },
    /// The number of sessions an agent holds changed.
    AgentLoad {
        /// When.
        t: u64,
        /// Global index of the agent.
        agent: u32,
        /// Sessions held from now on.
        load: u32,
    },
    /// An agent's reception status changed.
    AgentOnline {
        /// When.
        t: u64,
        /// Global index of the agent.
        agent: u32,
        /// Receiving new sessions from now on.
        online: bool,
    },
}

impl Obs {
    /// When it happened [µs of scenario time] (for `Entered`, the arrival).
    pub fn t(&self) -> u64 {
        match *self {
            Obs::Entered { s, .. } => s.arrived_us,
            Obs::Queued { t, .. }
            | Obs::Rejected { t, .. }
            | Obs::Assigned { t, .. }
            | Obs::Abandoned { t, .. }
            | Obs::Message { t, .. }
            | Obs::Reply { t, .. }
            | Obs::BotReply { t, .. }
            | Obs::Handoff { t, .. }
            | Obs::BotEnded { t, .. }
            | Obs::Transferred { t, .. }
            | Obs::Ended { t, .. }
            | Obs::Unfinished { t, .. }
            | Obs::AgentLoad { t, .. }
            | Obs::AgentOnline { t, .. } => t,
        }
    }
}

/// A consumer of observations. Engines are generic over it, so the call
/// costs nothing when it is inlined.
pub trait Observer {
    /// Take one observation; they arrive in time order.
    fn observe(&mut self, obs: Obs);
}

impl<F: FnMut(Obs)> Observer for F {
    fn observe(&mut self, obs: Obs) {
        self(obs)
    }
}
