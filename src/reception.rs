//! The reception core: which agent gets a session, and who waits.
//!
//! One [`Router`] per customer-service account holds its agents' online
//! state, caps (接待上限) and current loads, a [`Policy`] that chooses among
//! agents with a free slot, and the FIFO waiting pool (待接入池). It is pure:
//! no I/O, no clock, no randomness. Time is an argument, so the same code
//! routes in the simulator (virtual time) and in the reference service
//! (wall-clock time).
//!
//! A new policy (skill-based, say) is one type implementing [`Policy`], made
//! reachable from [`policy_for`].

use std::collections::VecDeque;
use std::fmt::Debug;

use crate::scenario::PolicyKind;

/// What a policy may read about one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentState {
    /// Sessions the agent may hold at once (接待上限).
    pub cap: u32,
    /// Sessions the agent holds now.
    pub load: u32,
    /// Whether the agent receives new sessions (接待中).
    pub online: bool,
    /// Order of the agent's latest assignment (larger is more recent; 0 is
    /// never). A sequence number rather than a time, so that ties at the
    /// same instant still have an order.
    pub last_assigned: u64,
}

impl AgentState {
    /// Online and below the cap.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.online && self.load < self.cap
    }
}

/// The agents with room, as a bit set kept by the router: a busy account
/// (most agents at their cap) is searched a word of 64 agents at a time
/// instead of agent by agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Room {
    words: Vec<u64>,
}

impl Room {
    /// Whether agent `i` has room.
    #[inline]
    pub fn contains(&self, i: usize) -> bool {
        self.words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Room for agents `0..n` (none of them with room).
    fn grow_to(&mut self, n: usize) {
        self.words.resize(n.div_ceil(64), 0);
    }

    /// Mark agent `i` (below the length grown to) as having room or not.
    #[inline]
    fn set(&mut self, i: usize, on: bool) {
        let bit = 1 << (i % 64);
        if on {
            self.words[i / 64] |= bit;
        } else {
            self.words[i / 64] &= !bit;
        }
    }

    /// The agents with room, in index order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(k, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let i = w.trailing_zeros() as usize;
                    w &= w - 1;
                    k * 64 + i
                })
            })
        })
    }

    /// The first agent with room at or after `start`, else the first
    /// before it (a cyclic order).
    pub fn next_from(&self, start: usize) -> Option<usize> {
        let (k0, b0) = (start / 64, start % 64);
        if let Some(&w) = self.words.get(k0) {
            let w = w & (u64::MAX << b0);
            if w != 0 {
                return Some(k0 * 64 + w.trailing_zeros() as usize);
            }
        }
        let first = |(k, &w): (usize, &u64)| (w != 0).then(|| k * 64 + w.trailing_zeros() as usize);
        self.words.iter().enumerate().skip(k0 + 1).find_map(first).or_else(|| {
            // wrapped: anything before `start`
            self.words.iter().enumerate().take(k0 + 1).find_map(first).filter(|&i| i < start)
        })
    }
}

/// Chooses the agent for a session among those with room.
///
/// Contract: `room` holds exactly the agents `i` with `agents[i].has_room()`;
/// return `Some(i)` only for such an `i`, and `None` only when no agent has
/// room. The router calls `pick` only when at least one agent has room.
/// Before a policy's first `pick` the router calls [`Policy::changed`] for
/// every agent, and after that whenever an agent's state changes, so a
/// policy may keep its own index of the agents instead of scanning them.
pub trait Policy: Debug + Send {
    /// Choose an agent for the next session.
    fn pick(&mut self, agents: &[AgentState], room: &Room, now_us: u64) -> Option<usize>;

    /// Agent `agent` is now in `state` (its load, cap, status or last
    /// assignment may have changed). The default keeps no index.
    #[inline]
    fn changed(&mut self, _agent: usize, _state: &AgentState) {}
}

/// 轮流接待: agents in a fixed cyclic order; the session goes to the next
/// agent with room after the one this policy chose last.
#[derive(Debug, Default)]
pub struct RoundRobin {
    last: Option<usize>,
}

impl Policy for RoundRobin {
    fn pick(&mut self, agents: &[AgentState], room: &Room, _now_us: u64) -> Option<usize> {
        let start = self.last.map_or(0, |l| l + 1);
        let chosen = room.next_from(if start >= agents.len() { 0 } else { start })?;
        self.last = Some(chosen);
        Some(chosen)
    }
}

/// 空闲接待: the agent with the fewest current sessions; among equals, the
/// one whose last assignment is oldest (then the first in order).
///
/// Each agent's key — load and last assignment packed in one `u64`,
/// `u64::MAX` without room — is kept by [`Policy::changed`] in a
/// tournament tree, so a pick reads the root and a change replays the
/// matches on the agent's path (log₂ of the agents, 8 at 200). A minimum
/// over the keys at each pick cost 1 500 instructions at 200 agents, 2.6 %
/// of the reference service's customer message; an ordered set was tried
/// before: its upkeep at every change of load cost more than it saved.
#[derive(Debug, Default)]
pub struct IdleFirst {
    /// The agents' keys, padded with `u64::MAX` to a power of two `n`.
    keys: Vec<u64>,
    /// The tree, `2n` entries: `win[n + i] = i` (the leaves), and node `p`
    /// (1 ≤ p < n) the winner of nodes `2p` and `2p + 1`: the lesser key,
    /// the left one on a tie, so the root is the first least key.
    win: Vec<u32>,
}

impl IdleFirst {
    /// Bits of the last assignment's order in a key: 2^48 assignments (a
    /// year at ten million a second) before ties would be broken by index.
    const ORDER_BITS: u32 = 48;

    fn key(state: &AgentState) -> u64 {
        if !state.has_room() {
            return u64::MAX;
        }
        let order = state.last_assigned.min((1 << Self::ORDER_BITS) - 1);
        // below a cap (at most 10 000 in scenarios and the service's API):
        // 16 bits hold it; the clamp only keeps a key below u64::MAX
        (u64::from(state.load).min(0xfffe) << Self::ORDER_BITS) | order
    }

    #[inline(always)]
    fn play(&self, p: usize) -> u32 {
        let (l, r) = (self.win[2 * p], self.win[2 * p + 1]);
        if self.keys[r as usize] < self.keys[l as usize] { r } else { l }
    }

    /// Room for agent `agent`: the next power of two, the tree replayed.
    #[cold]
    fn grow(&mut self, agent: usize) {
        let n = (agent + 1).next_power_of_two();
        self.keys.resize(n, u64::MAX);
        self.win = vec![0; 2 * n];
        for i in 0..n {
            self.win[n + i] = i as u32;
        }
        for p in (1..n).rev() {
            self.win[p] = self.play(p);
        }
    }
}

impl Policy for IdleFirst {
    fn pick(&mut self, agents: &[AgentState], room: &Room, _now_us: u64) -> Option<usize> {
        // the first least key: equal keys (never assigned) go by index
        let picked = self.win.get(1).map(|&i| i as usize).filter(|&i| self.keys[i] != u64::MAX);
        debug_assert_eq!(
            picked,
            room.iter().min_by_key(|&i| (agents[i].load, agents[i].last_assigned)),
            "the idle-first keys disagree with a scan"
        );
        picked
    }

    #[inline]
    fn changed(&mut self, agent: usize, state: &AgentState) {
        if self.keys.len() <= agent {
            self.grow(agent);
        }
        self.keys[agent] = Self::key(state);
        let mut p = (self.keys.len() + agent) / 2;
        while p > 0 {
            self.win[p] = self.play(p);
            p /= 2;
        }
    }
}

/// Packs agents: the agent with the most current sessions still below its
/// cap; among equals, the first in order.
#[derive(Debug, Default)]
pub struct FillFirst;

impl Policy for FillFirst {
    fn pick(&mut self, agents: &[AgentState], room: &Room, _now_us: u64) -> Option<usize> {
        let mut best: Option<usize> = None;
        for i in room.iter() {
            if best.is_none_or(|b| agents[i].load > agents[b].load) {
                best = Some(i);
            }
        }
        best
    }
}

/// The policy a scenario names.
pub fn policy_for(kind: PolicyKind) -> Box<dyn Policy> {
    match kind {
        PolicyKind::RoundRobin => Box::<RoundRobin>::default(),
        PolicyKind::IdleFirst => Box::<IdleFirst>::default(),
        PolicyKind::FillFirst => Box::new(FillFirst),
    }
}

/// A place in the waiting pool, for taking a session out when it abandons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(pub u64);

/// The outcome of routing an arriving session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Given to `agent` (state 3, 人工接待); `kept` when that was the
    /// preferred (last) agent.
    Assigned {
        /// Index of the agent within the account.
        agent: usize,
        /// The preferred agent got it.
        kept: bool,
    },
    /// Put in the waiting pool (state 2, 待接入池).
    Queued(Ticket),
    /// The pool was full (`queue_limit`).
    Rejected,
}

/// A waiting session leaving the pool for an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment<T> {
    /// What was waiting.
    pub item: T,
    /// Index of the agent within the account.
    pub agent: usize,
    /// The preferred agent got it.
    pub kept: bool,
}

/// FIFO with O(1) removal from the middle: a removed entry leaves a hole
/// that the front skips, and a ticket is an absolute position.
#[derive(Debug)]
struct Pool<T> {
    slots: VecDeque<Option<(T, Option<u32>)>>,
    head: u64,
    len: usize,
}

impl<T> Pool<T> {
    fn push(&mut self, item: T, prefer: Option<u32>) -> Ticket {
        self.slots.push_back(Some((item, prefer)));
        self.len += 1;
        Ticket(self.head + self.slots.len() as u64 - 1)
    }

    fn pop(&mut self) -> Option<(T, Option<u32>)> {
        while let Some(front) = self.slots.pop_front() {
            self.head += 1;
            if front.is_some() {
                self.len -= 1;
                return front;
            }
        }
        None
    }

    fn remove(&mut self, ticket: Ticket) -> Option<T> {
        let idx = usize::try_from(ticket.0.checked_sub(self.head)?).ok()?;
        let (item, _) = self.slots.get_mut(idx)?.take()?;
        self.len -= 1;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.head += 1;
        }
        Some(item)
    }
}

/// The reception state of one account.
#[derive(Debug)]
pub struct Router<T> {
    agents: Vec<AgentState>,
    policy: Box<dyn Policy>,
    pool: Pool<T>,
    queue_limit: Option<u32>,
    /// Free slots over online agents: lets a full account skip the policy.
    free: u64,
    /// The agents with room (see [`Room`]): kept with every change of an
    /// agent's load, cap or status.
    room: Room,
    assignments: u64,
}

impl<T> Router<T> {
    /// A router for agents with these caps, all offline to begin with.
    pub fn new(policy: Box<dyn Policy>, caps: &[u32], queue_limit: Option<u32>) -> Router<T> {
        let mut router = Router {
            agents: caps
                .iter()
                .map(|&cap| AgentState { cap, load: 0, online: false, last_assigned: 0 })
                .collect(),
            policy,
            pool: Pool { slots: VecDeque::new(), head: 0, len: 0 },
            queue_limit,
            free: 0,
            room: {
                let mut room = Room::default();
                room.grow_to(caps.len());
                room
            },
            assignments: 0,
        };
        router.show_agents();
        router
    }

    /// Tell the policy every agent's state (see [`Policy`]'s contract).
    fn show_agents(&mut self) {
        for (i, a) in self.agents.iter().enumerate() {
            self.policy.changed(i, a);
        }
    }

    /// Agent `agent`'s state changed: its room, perhaps, and the policy's
    /// view of it.
    #[inline]
    fn refresh(&mut self, agent: usize) {
        let a = &self.agents[agent];
        let has = a.has_room();
        if has != self.room.contains(agent) {
            self.room.set(agent, has);
        }
        self.policy.changed(agent, a);
    }

    /// The agents' current state.
    pub fn agents(&self) -> &[AgentState] {
        &self.agents
    }

    /// Sessions in the waiting pool.
    pub fn waiting(&self) -> usize {
        self.pool.len
    }

    /// Route an arriving session. `prefer` is the agent to keep for a
    /// returning customer (优先分配给上次接待人员), if the caller's rules
    /// make one eligible; it is used when that agent has room.
    pub fn arrive(&mut self, item: T, prefer: Option<usize>, now_us: u64) -> Routed {
        // A session arriving while others wait joins the back of the pool:
        // FIFO fairness beats a preferred agent's free slot.
        if self.pool.len == 0
            && let Some((agent, kept)) = self.choose(prefer, now_us)
        {
            self.assign(agent);
            return Routed::Assigned { agent, kept };
        }
        match self.queue_limit {
            Some(limit) if self.pool.len >= limit as usize => Routed::Rejected,
            _ => Routed::Queued(self.pool.push(item, prefer.map(|p| p as u32))),
        }
    }

    /// A session of `agent` ended: free its slot and, if someone waits, give
    /// them the free capacity.
    pub fn release(&mut self, agent: usize, now_us: u64) -> Option<Assignment<T>> {
        self.vacate(agent);
        self.serve_pool(now_us)
    }

    /// An agent this account shares with others (a servicer of several
    /// accounts) took a session elsewhere: one slot less here, whether or
    /// not it had room by this account's count.
    pub fn occupy(&mut self, agent: usize) {
        let a = &mut self.agents[agent];
        if a.online && a.load < a.cap {
            self.free -= 1;
        }
        a.load += 1;
        self.refresh(agent);
    }

    /// One of `agent`'s sessions ended, here or in another account that
    /// shares it, without serving the pool yet: whoever shares the agent
    /// decides which pool is served first ([`Router::serve`]).
    pub fn vacate(&mut self, agent: usize) {
        let a = &mut self.agents[agent];
        debug_assert!(a.load > 0, "release of an agent with no session");
        a.load -= 1;
        // An agent whose cap was lowered below its load gains no room
        // until its load is under the new cap.
        if a.online && a.load < a.cap {
            self.free += 1;
        }
        self.refresh(agent);
    }

    /// Give the head of the pool to an agent with room, if both exist.
    pub fn serve(&mut self, now_us: u64) -> Option<Assignment<T>> {
        self.serve_pool(now_us)
    }

    /// Replace the policy (a rule change); agents, loads and the pool stay.
    pub fn set_policy(&mut self, policy: Box<dyn Policy>) {
        self.policy = policy;
        self.show_agents();
    }

    /// Change the pool's size limit. Sessions already waiting stay even if
    /// they are now over it; only arrivals are refused.
    pub fn set_queue_limit(&mut self, queue_limit: Option<u32>) {
        self.queue_limit = queue_limit;
    }

    /// Add an agent (offline, no sessions) and return its index. Policies
    /// see it from the next decision on.
    pub fn add_agent(&mut self, cap: u32) -> usize {
        self.agents.push(AgentState { cap, load: 0, online: false, last_assigned: 0 });
        self.room.grow_to(self.agents.len());
        self.agents.len() - 1
    }

    /// Change an agent's cap (接待上限). Sessions above a lowered cap stay;
    /// a raised cap serves the pool into the new room.
    pub fn set_cap(&mut self, agent: usize, cap: u32, now_us: u64, out: &mut Vec<Assignment<T>>) {
        let a = &mut self.agents[agent];
        let old_room = u64::from(a.cap.saturating_sub(a.load));
        a.cap = cap;
        let new_room = u64::from(a.cap.saturating_sub(a.load));
        let online = a.online;
        self.refresh(agent);
        if online {
            self.free = self.free - old_room + new_room;
            while let Some(assignment) = self.serve_pool(now_us) {
                out.push(assignment);
            }
        }
    }

    /// Give a session to this agent (a transfer to a named agent, 转接),
    /// bypassing the policy and the pool. Refused (`false`) unless the
    /// agent is online and below its cap.
    pub fn assign_to(&mut self, agent: usize) -> bool {
        if !self.agents.get(agent).is_some_and(AgentState::has_room) {
            return false;
        }
        self.assign(agent);
        true
    }

    /// Set an agent's reception status (接待中 or not). Coming online serves
    /// the pool into the new capacity; going offline keeps the agent's
    /// current sessions but gives it no new ones.
    pub fn set_online(&mut self, agent: usize, online: bool, now_us: u64, out: &mut Vec<Assignment<T>>) {
        let a = &mut self.agents[agent];
        if a.online == online {
            return;
        }
        a.online = online;
        let room = u64::from(a.cap.saturating_sub(a.load));
        self.refresh(agent);
        if online {
            self.free += room;
            while let Some(assignment) = self.serve_pool(now_us) {
                out.push(assignment);
            }
        } else {
            self.free -= room;
        }
    }

    /// Take a waiting session out of the pool (the customer abandoned).
    pub fn abandon(&mut self, ticket: Ticket) -> Option<T> {
        self.pool.remove(ticket)
    }

    fn serve_pool(&mut self, now_us: u64) -> Option<Assignment<T>> {
        if self.free == 0 || self.pool.len == 0 {
            return None;
        }
        let (item, prefer) = self.pool.pop()?;
        let (agent, kept) = self.choose(prefer.map(|p| p as usize), now_us)?;
        self.assign(agent);
        Some(Assignment { item, agent, kept })
    }

    fn choose(&mut self, prefer: Option<usize>, now_us: u64) -> Option<(usize, bool)> {
        if self.free == 0 {
            return None;
        }
        if let Some(p) = prefer
            && self.agents.get(p).is_some_and(AgentState::has_room)
        {
            return Some((p, true));
        }
        debug_assert!(
            self.agents.iter().enumerate().all(|(i, a)| a.has_room() == self.room.contains(i)),
            "the room set disagrees with the agents"
        );
        let agent = self.policy.pick(&self.agents, &self.room, now_us)?;
        debug_assert!(self.agents[agent].has_room(), "policy picked an agent without room");
        Some((agent, prefer == Some(agent)))
    }

    fn assign(&mut self, agent: usize) {
        self.assignments += 1;
        self.agents[agent].last_assigned = self.assignments;
        self.occupy(agent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_finds_the_next_agent_cyclically_across_words() {
        let mut room = Room::default();
        assert_eq!(room.next_from(0), None);
        room.grow_to(131);
        for i in [3, 64, 130] {
            room.set(i, true);
        }
        assert_eq!(room.iter().collect::<Vec<_>>(), vec![3, 64, 130]);
        assert_eq!(room.next_from(0), Some(3));
        assert_eq!(room.next_from(3), Some(3));
        assert_eq!(room.next_from(4), Some(64));
        assert_eq!(room.next_from(65), Some(130));
        assert_eq!(room.next_from(131), Some(3), "wraps to the start");
        assert_eq!(room.next_from(500), Some(3), "past the last word");
        room.set(3, false);
        assert_eq!(room.next_from(131), Some(64), "wraps into a later word");
        assert!(!room.contains(3) && room.contains(64) && !room.contains(1000));
        room.set(64, false);
        room.set(130, false);
        assert_eq!(room.next_from(7), None);
        assert_eq!(room.iter().count(), 0);
    }

    /// The room set and the policies over it choose as a scan of every
    /// agent would, through a long random run of a large account (agents
    /// coming and going, caps changing, sessions ending).
    #[test]
    fn policies_over_the_room_set_choose_as_a_scan_would() {
        use rand::{Rng, SeedableRng};
        for kind in [PolicyKind::RoundRobin, PolicyKind::IdleFirst, PolicyKind::FillFirst] {
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
            let mut below = |n: usize| (rng.next_u64() % n as u64) as usize;
            let caps: Vec<u32> = (0..150).map(|i| 1 + i % 3).collect();
            // no pool: an arrival is assigned by the policy or refused
            let mut r: Router<u64> = Router::new(policy_for(kind), &caps, Some(0));
            let mut out = Vec::new();
            for a in 0..caps.len() {
                r.set_online(a, true, 0, &mut out);
            }
            let (mut last, mut held) = (None::<usize>, Vec::new());
            let mut assigned = 0;
            for t in 0..30_000u64 {
                // a policy set mid-run (a rule change) sees the agents as they are
                if below(500) == 0 {
                    r.set_policy(policy_for(kind));
                    last = None;
                }
                match below(10) {
                    0 => r.set_online(below(caps.len()), below(10) < 7, t, &mut out),
                    1 => r.set_cap(below(caps.len()), below(4) as u32, t, &mut out),
                    2..=5 if !held.is_empty() => {
                        let a = held.swap_remove(below(held.len()));
                        r.vacate(a);
                    }
                    _ => {
                        let agents = r.agents().to_vec();
                        let n = agents.len();
                        let with_room = (0..n).filter(|&i| agents[i].has_room());
                        let want = match kind {
                            PolicyKind::RoundRobin => {
                                let start = last.map_or(0, |l| l + 1);
                                (0..n).map(|k| (start + k) % n).find(|&i| agents[i].has_room())
                            }
                            PolicyKind::IdleFirst => {
                                with_room.min_by_key(|&i| (agents[i].load, agents[i].last_assigned))
                            }
                            PolicyKind::FillFirst => with_room.fold(None, |b: Option<usize>, i| {
                                if b.is_none_or(|b| agents[i].load > agents[b].load) { Some(i) } else { b }
                            }),
                        };
                        let got = match r.arrive(t, None, t) {
                            Routed::Assigned { agent, .. } => Some(agent),
                            _ => None,
                        };
                        assert_eq!(got, want, "{kind:?} at step {t}");
                        if let Some(a) = got {
                            held.push(a);
                            last = Some(a);
                            assigned += 1;
                        }
                    }
                }
                assert!(out.is_empty(), "nothing waits, so nothing is served");
            }
            assert!(assigned > 5_000, "{kind:?}: {assigned}");
        }
    }

    fn router(kind: PolicyKind, caps: &[u32], limit: Option<u32>) -> Router<u32> {
        let mut r = Router::new(policy_for(kind), caps, limit);
        let mut out = Vec::new();
        for i in 0..caps.len() {
            r.set_online(i, true, 0, &mut out);
        }
        r
    }

    fn agent_of(r: Routed) -> usize {
        match r {
            Routed::Assigned { agent, .. } => agent,
            other => panic!("expected an assignment, got {other:?}"),
        }
    }

    #[test]
    fn round_robin_cycles_and_skips_full_agents() {
        let mut r = router(PolicyKind::RoundRobin, &[1, 2, 1], None);
        let got: Vec<usize> = (0..4).map(|i| agent_of(r.arrive(i, None, 0))).collect();
        assert_eq!(got, [0, 1, 2, 1]);
        assert!(matches!(r.arrive(9, None, 0), Routed::Queued(_)));
    }

    #[test]
    fn idle_first_prefers_fewest_then_oldest() {
        let mut r = router(PolicyKind::IdleFirst, &[3, 3, 3], None);
        assert_eq!(agent_of(r.arrive(0, None, 0)), 0);
        assert_eq!(agent_of(r.arrive(1, None, 0)), 1);
        assert_eq!(agent_of(r.arrive(2, None, 0)), 2);
        // all hold one; agent 0's assignment is the oldest
        assert_eq!(agent_of(r.arrive(3, None, 0)), 0);
        assert_eq!(r.release(1, 0), None);
        // agent 1 now holds none
        assert_eq!(agent_of(r.arrive(4, None, 0)), 1);
    }

    #[test]
    fn fill_first_packs() {
        let mut r = router(PolicyKind::FillFirst, &[2, 2], None);
        let got: Vec<usize> = (0..4).map(|i| agent_of(r.arrive(i, None, 0))).collect();
        assert_eq!(got, [0, 0, 1, 1]);
    }

    #[test]
    fn preferred_agent_is_kept_when_it_has_room() {
        let mut r = router(PolicyKind::RoundRobin, &[1, 1], None);
        assert_eq!(r.arrive(0, Some(1), 0), Routed::Assigned { agent: 1, kept: true });
        // agent 1 is full: the policy decides, and the preference is not kept
        assert_eq!(r.arrive(1, Some(1), 0), Routed::Assigned { agent: 0, kept: false });
    }

    #[test]
    fn pool_is_fifo_limited_and_abandonable() {
        let mut r = router(PolicyKind::RoundRobin, &[1], Some(2));
        agent_of(r.arrive(0, None, 0));
        let Routed::Queued(t1) = r.arrive(1, None, 0) else { panic!() };
        let Routed::Queued(_) = r.arrive(2, None, 0) else { panic!() };
        assert_eq!(r.arrive(3, None, 0), Routed::Rejected);
        assert_eq!(r.abandon(t1), Some(1));
        assert_eq!(r.abandon(t1), None, "a ticket is used once");
        assert_eq!(r.waiting(), 1);
        assert_eq!(r.release(0, 5), Some(Assignment { item: 2, agent: 0, kept: false }));
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn offline_agents_get_nothing_and_coming_online_serves_the_pool() {
        let mut r: Router<u32> = Router::new(policy_for(PolicyKind::IdleFirst), &[2, 1], None);
        assert!(matches!(r.arrive(0, None, 0), Routed::Queued(_)));
        assert!(matches!(r.arrive(1, None, 0), Routed::Queued(_)));
        assert!(matches!(r.arrive(2, None, 0), Routed::Queued(_)));
        let mut out = Vec::new();
        r.set_online(0, true, 10, &mut out);
        assert_eq!(out.iter().map(|a| (a.item, a.agent)).collect::<Vec<_>>(), [(0, 0), (1, 0)]);
        r.set_online(0, false, 20, &mut out);
        assert_eq!(r.release(0, 30), None, "an offline agent's freed slot is not used");
        out.clear();
        r.set_online(1, true, 40, &mut out);
        assert_eq!(out.iter().map(|a| (a.item, a.agent)).collect::<Vec<_>>(), [(2, 1)]);
    }

    #[test]
    fn added_agents_join_offline_and_serve_the_pool_when_online() {
        let mut r: Router<u32> = Router::new(policy_for(PolicyKind::RoundRobin), &[], None);
        assert!(matches!(r.arrive(0, None, 0), Routed::Queued(_)));
        let a = r.add_agent(2);
        assert_eq!((a, r.agents()[a].online), (0, false));
        let mut out = Vec::new();
        r.set_online(a, true, 1, &mut out);
        assert_eq!(out.iter().map(|x| (x.item, x.agent)).collect::<Vec<_>>(), [(0, 0)]);
        assert_eq!(agent_of(r.arrive(1, None, 2)), 0);
        assert!(matches!(r.arrive(2, None, 2), Routed::Queued(_)));
    }

    #[test]
    fn set_cap_lowers_without_evicting_and_raises_into_the_pool() {
        let mut r = router(PolicyKind::FillFirst, &[3], None);
        for i in 0..3 {
            agent_of(r.arrive(i, None, 0));
        }
        let mut out = Vec::new();
        r.set_cap(0, 1, 1, &mut out);
        assert_eq!(r.agents()[0].load, 3, "sessions above the new cap stay");
        assert!(matches!(r.arrive(3, None, 1), Routed::Queued(_)));
        // two releases bring the load to the cap: no room yet, the pool waits
        assert_eq!(r.release(0, 2), None);
        assert_eq!(r.release(0, 2), None);
        assert_eq!(r.release(0, 3).map(|x| x.item), Some(3), "room again below the cap");
        r.set_cap(0, 3, 4, &mut out);
        assert!(out.is_empty());
        assert_eq!(agent_of(r.arrive(4, None, 5)), 0);
        assert_eq!(agent_of(r.arrive(5, None, 5)), 0);
        assert!(matches!(r.arrive(6, None, 5), Routed::Queued(_)));
        out.clear();
        r.set_cap(0, 4, 6, &mut out);
        assert_eq!(out.iter().map(|x| x.item).collect::<Vec<_>>(), [6]);
    }

    #[test]
    fn policy_and_queue_limit_can_change_in_place() {
        let mut r = router(PolicyKind::RoundRobin, &[2, 2], Some(0));
        assert_eq!(agent_of(r.arrive(0, None, 0)), 0);
        r.set_policy(policy_for(PolicyKind::FillFirst));
        assert_eq!(agent_of(r.arrive(1, None, 0)), 0, "fill_first packs agent 0");
        agent_of(r.arrive(2, None, 0));
        agent_of(r.arrive(3, None, 0));
        assert_eq!(r.arrive(4, None, 0), Routed::Rejected);
        r.set_queue_limit(Some(1));
        assert!(matches!(r.arrive(5, None, 0), Routed::Queued(_)));
        assert_eq!(r.arrive(6, None, 0), Routed::Rejected);
    }

    #[test]
    fn assign_to_needs_an_online_agent_with_room() {
        let mut r = router(PolicyKind::RoundRobin, &[1, 1], None);
        assert!(r.assign_to(1));
        assert!(!r.assign_to(1), "agent 1 is at its cap");
        assert!(!r.assign_to(7), "no such agent");
        let mut out = Vec::new();
        r.set_online(0, false, 0, &mut out);
        assert!(!r.assign_to(0), "agent 0 is offline");
        // the free-slot count stayed right: nothing has room now
        assert!(matches!(r.arrive(9, None, 0), Routed::Queued(_)));
        assert_eq!(r.release(1, 1).map(|x| (x.item, x.agent)), Some((9, 1)));
    }

    #[test]
    fn an_agent_shared_with_another_account_is_counted_in_both() {
        let mut a = router(PolicyKind::RoundRobin, &[2], None);
        let mut b = router(PolicyKind::RoundRobin, &[2], None);
        agent_of(a.arrive(0, None, 0));
        b.occupy(0);
        agent_of(b.arrive(1, None, 0));
        a.occupy(0);
        // full in both: each account queues
        assert!(matches!(a.arrive(2, None, 0), Routed::Queued(_)));
        assert!(matches!(b.arrive(3, None, 0), Routed::Queued(_)));
        // a slot frees: vacated in both, then the caller serves b first
        a.vacate(0);
        b.vacate(0);
        assert_eq!(b.serve(1).map(|x| (x.item, x.agent)), Some((3, 0)));
        a.occupy(0);
        assert_eq!(a.serve(1), None, "the slot went to b");
        assert_eq!(a.waiting(), 1);
        // occupying an agent past its cap (a lowered cap elsewhere) is allowed
        a.occupy(0);
        a.vacate(0);
        assert_eq!(a.serve(2), None);
    }

    #[test]
    fn arrivals_do_not_overtake_waiting_sessions() {
        let mut r = router(PolicyKind::RoundRobin, &[1, 1], None);
        agent_of(r.arrive(0, None, 0));
        agent_of(r.arrive(1, None, 0));
        assert!(matches!(r.arrive(2, None, 0), Routed::Queued(_)));
        // a slot frees and is taken by the waiting session, not a newcomer
        assert_eq!(r.release(1, 1).map(|a| a.item), Some(2));
        assert!(matches!(r.arrive(3, Some(0), 1), Routed::Queued(_)));
    }
}
