//! The one stream of observations that every engine emits and `metrics`
//! folds.
//!
//! An observation carries everything its consumer needs about the session
//! ([`SessionInfo`]), so that the metrics keep no per-session state and their
//! memory does not grow with the number of sessions simulated.

/// What every observation knows about its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// When the customer's first message arrived [µs].
    pub arrived_us: u64,
    /// Index of the entry point in the scenario.
    pub entry: u16,
    /// Index of the account in the scenario.
    pub account: u16,
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
