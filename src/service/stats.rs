//! Daily statistics per account and per servicer, for
//! `kf/get_corp_statistic` and `kf/get_servicer_statistic`. Pure state:
//! time is an argument.
//!
//! Days run midnight to midnight in China Standard Time (UTC+8), as
//! WeCom's `stat_time` does. kfsim's readings of WeCom's figures:
//! `session_cnt` counts sessions started (4 → 0) for an account and
//! sessions given to a servicer for a servicer; `customer_cnt` counts the
//! same sessions (a customer has one session at a time, so a customer with
//! two sessions in a day counts twice); `customer_msg_cnt` counts customer
//! messages (for a servicer: those handed to them); `ai_session_reply_cnt`
//! counts sessions the API first answered (0 → 1); the 升级服务 figures
//! count `customer/upgrade_service` calls as `upgrade.rs` reads them.
//! Figures kfsim does not model (satisfaction, group chats) are 0. Today's
//! figures are served as they stand, unlike WeCom, which serves a day
//! after it ends.

use std::collections::BTreeMap;

use serde::Serialize;

use super::errors::ApiError;
use super::model::Name;
use super::state::{HashMap, State};

const DAY_S: u64 = 86_400;
/// China Standard Time is UTC+8.
const CST_OFFSET_S: u64 = 8 * 3600;
/// WeCom keeps 180 days.
pub(super) const KEEP_DAYS: u64 = 180;
/// At most 31 days per query.
const MAX_SPAN_DAYS: u64 = 31;
/// The latest time a query may name: 9999-12-31 23:59:59 UTC.
const MAX_TIME_S: u64 = 253_402_300_799;

/// The start of the CST day holding `now_us` [s since the epoch].
pub(super) fn day_of(now_us: u64) -> u64 {
    let s = now_us / 1_000_000 + CST_OFFSET_S;
    // a clock in the epoch's first 16 hours (a test's) has its day at 0
    (s - s % DAY_S).saturating_sub(CST_OFFSET_S)
}

/// One account's figures for one day.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct CorpDay {
    /// Sessions started.
    pub session_cnt: u64,
    /// Customers who started them.
    pub customer_cnt: u64,
    /// Customer messages.
    pub customer_msg_cnt: u64,
    /// Customers upgraded (专员) that day, each once.
    pub upgrade_service_customer_cnt: u64,
    /// Sessions the API answered first (as a bot).
    pub ai_session_reply_cnt: u64,
    /// Not modelled: 0.
    pub ai_transfer_rate: f64,
    /// Not modelled: 0.
    pub ai_knowledge_hit_rate: f64,
    /// Not modelled: 0.
    pub msg_rejected_customer_cnt: u64,
}

/// One servicer's figures for one day (of one account).
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct ServicerDay {
    /// Sessions given to the servicer.
    pub session_cnt: u64,
    /// Customers of those sessions.
    pub customer_cnt: u64,
    /// Customer messages handed to the servicer.
    pub customer_msg_cnt: u64,
    /// Not modelled: 0.
    pub reply_rate: f64,
    /// Not modelled: 0.
    pub first_reply_average_sec: f64,
    /// Not modelled: 0.
    pub satisfaction_investgate_cnt: u64,
    /// Not modelled: 0.
    pub satisfaction_participation_rate: f64,
    /// Not modelled: 0.
    pub satisfied_rate: f64,
    /// Not modelled: 0.
    pub middling_rate: f64,
    /// Not modelled: 0.
    pub dissatisfied_rate: f64,
    /// Customers upgraded while the servicer held their session, each once.
    pub upgrade_service_customer_cnt: u64,
    /// Upgrades to a 专员 while the servicer held the session, every one.
    pub upgrade_service_member_invite_cnt: u64,
    /// Distinct (customer, 专员) pairs among those upgrades.
    pub upgrade_service_member_customer_cnt: u64,
    /// Not modelled (kfsim has no group chats): 0.
    pub upgrade_service_groupchat_invite_cnt: u64,
    /// Not modelled (kfsim has no group chats): 0.
    pub upgrade_service_groupchat_customer_cnt: u64,
    /// Not modelled: 0.
    pub msg_rejected_customer_cnt: u64,
}

/// An account's days, and its servicers' days.
#[derive(Debug, Default)]
pub(super) struct Days {
    corp: BTreeMap<u64, CorpDay>,
    /// By userid, as WeCom answers for them: a user's index is reused once
    /// it is removed, and credited a new servicer with the old one's day.
    servicers: BTreeMap<u64, HashMap<Name, ServicerDay>>,
}

/// What happened, for the day's figures.
#[derive(Debug, Clone, Copy)]
pub(super) enum Tally<'a> {
    /// A session started (4 → 0).
    SessionStarted,
    /// A customer message.
    CustomerMessage,
    /// The API answered a session first (0 → 1).
    BotAnswered,
    /// A session was given to servicer `userid`.
    Assigned(&'a Name),
    /// A customer message was handed to servicer `userid`.
    Handed(&'a Name),
    /// A customer was upgraded for the first time that day.
    Upgraded,
    /// Servicer `by` held the session of an upgrade to a 专员; whether
    /// the customer and the (customer, 专员) pair are new for `by` that day.
    MemberInvited { by: &'a Name, new_customer: bool, new_pair: bool },
}

impl Days {
    pub(super) fn tally(&mut self, t: Tally, now_us: u64) {
        let day = day_of(now_us);
        match t {
            Tally::SessionStarted => {
                let d = self.corp.entry(day).or_default();
                d.session_cnt += 1;
                d.customer_cnt += 1;
            }
            Tally::CustomerMessage => self.corp.entry(day).or_default().customer_msg_cnt += 1,
            Tally::BotAnswered => self.corp.entry(day).or_default().ai_session_reply_cnt += 1,
            Tally::Assigned(u) => self.servicer(u, now_us, |d| {
                d.session_cnt += 1;
                d.customer_cnt += 1;
            }),
            Tally::Handed(u) => self.servicer(u, now_us, |d| d.customer_msg_cnt += 1),
            Tally::Upgraded => self.corp.entry(day).or_default().upgrade_service_customer_cnt += 1,
            Tally::MemberInvited { by, new_customer, new_pair } => self.servicer(by, now_us, |d| {
                d.upgrade_service_member_invite_cnt += 1;
                d.upgrade_service_customer_cnt += u64::from(new_customer);
                d.upgrade_service_member_customer_cnt += u64::from(new_pair);
            }),
        }
    }

    /// `tally` on servicer `userid`'s day: one hash lookup a message (a
    /// search of a sorted map by name, twice, cost 190 ns with 2000
    /// servicers: found by review), the name copied only on its day's first.
    fn servicer(&mut self, userid: &Name, now_us: u64, tally: impl FnOnce(&mut ServicerDay)) {
        let day = self.servicers.entry(day_of(now_us)).or_default();
        match day.get_mut(userid) {
            Some(d) => tally(d),
            None => tally(day.entry(userid.clone()).or_default()),
        }
    }

    /// Forget days older than WeCom keeps.
    pub(super) fn expire(&mut self, now_us: u64) {
        let oldest = day_of(now_us).saturating_sub(KEEP_DAYS * DAY_S);
        self.corp = self.corp.split_off(&oldest);
        self.servicers = self.servicers.split_off(&oldest);
    }
}

/// The days of a query, checked: `start_time` to `end_time` (closed), each
/// floored to its day, at most 31 days.
fn days(start_time: u64, end_time: u64) -> Result<Vec<u64>, ApiError> {
    // arithmetic in µs on any u64 would wrap: times outside these say nothing
    for (field, t) in [("start_time", start_time), ("end_time", end_time)] {
        if !(DAY_S..=MAX_TIME_S).contains(&t) {
            return Err(ApiError::param(format!(
                "{field} must be a Unix time in seconds between {DAY_S} and {MAX_TIME_S}, not {t}"
            )));
        }
    }
    let (from, to) = (day_of(start_time * 1_000_000), day_of(end_time * 1_000_000));
    if from > to {
        return Err(ApiError::param("start_time must not be after end_time"));
    }
    if (to - from) / DAY_S >= MAX_SPAN_DAYS {
        return Err(ApiError::param("at most 31 days per query"));
    }
    Ok((0..=(to - from) / DAY_S).map(|i| from + i * DAY_S).collect())
}

impl State {
    /// `kf/get_corp_statistic`: an account's figures per day.
    pub fn corp_statistic(
        &self,
        open_kfid: &str,
        start_time: u64,
        end_time: u64,
    ) -> Result<Vec<(u64, CorpDay)>, ApiError> {
        let acct = self.account_of(open_kfid)?;
        let d = &self.accounts.get(acct).expect("account").days;
        Ok(days(start_time, end_time)?
            .into_iter()
            .map(|t| (t, d.corp.get(&t).copied().unwrap_or_default()))
            .collect())
    }

    /// `kf/get_servicer_statistic`: one servicer's figures per day in an
    /// account, or the sum over its servicers without `servicer_userid`.
    pub fn servicer_statistic(
        &self,
        open_kfid: &str,
        servicer_userid: &str,
        start_time: u64,
        end_time: u64,
    ) -> Result<Vec<(u64, ServicerDay)>, ApiError> {
        let acct = self.account_of(open_kfid)?;
        let d = &self.accounts.get(acct).expect("account").days;
        let user = match Name::new(servicer_userid) {
            u if u.is_empty() => None,
            // one removed since still has its days
            u if d.servicers.values().any(|s| s.contains_key(&u)) => Some(u),
            u => Some(self.user_of(&u).map(|_| u)?),
        };
        let days = days(start_time, end_time)?;
        Ok(days
            .into_iter()
            .map(|t| {
                let mut sum = ServicerDay::default();
                for (_, s) in d
                    .servicers
                    .get(&t)
                    .into_iter()
                    .flatten()
                    .filter(|(u, _)| user.as_ref().is_none_or(|x| x == *u))
                {
                    sum.session_cnt += s.session_cnt;
                    sum.customer_cnt += s.customer_cnt;
                    sum.customer_msg_cnt += s.customer_msg_cnt;
                    // over servicers: a customer two of them upgraded counts twice
                    sum.upgrade_service_customer_cnt += s.upgrade_service_customer_cnt;
                    sum.upgrade_service_member_invite_cnt += s.upgrade_service_member_invite_cnt;
                    sum.upgrade_service_member_customer_cnt += s.upgrade_service_member_customer_cnt;
                }
                (t, sum)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_china_standard_time_days() {
        // 2023-11-15 00:00 CST is 2023-11-14 16:00 UTC
        let midnight = 1_700_000_000 - (1_700_000_000 + CST_OFFSET_S) % DAY_S;
        assert_eq!(day_of(midnight * 1_000_000), midnight);
        assert_eq!(day_of((midnight + DAY_S - 1) * 1_000_000), midnight);
        assert_eq!(day_of((midnight + DAY_S) * 1_000_000), midnight + DAY_S);
        assert_eq!((midnight + CST_OFFSET_S) % DAY_S, 0);
        assert_eq!(
            days(midnight + 5, midnight + 2 * DAY_S).unwrap(),
            [midnight, midnight + DAY_S, midnight + 2 * DAY_S]
        );
        assert!(days(midnight + DAY_S, midnight).is_err());
        // times whose µs would wrap, or before the epoch's first day, are refused
        for (from, to) in [(0, DAY_S), (1000, 2000), (18_446_744_073_709, 18_446_744_073_709), (0, u64::MAX)]
        {
            let e = days(from, to).unwrap_err();
            assert!(e.to_string().contains("Unix time in seconds"), "{from}..{to}: {e}");
        }
        assert_eq!(day_of(0), 0);
        assert_eq!(days(MAX_TIME_S, MAX_TIME_S).unwrap().len(), 1);
        assert_eq!(days(midnight, midnight + 30 * DAY_S).unwrap().len(), 31);
        assert!(days(midnight, midnight + 31 * DAY_S).is_err());
    }

    #[test]
    fn tallies_land_on_their_day_and_old_days_go() {
        let t0 = 1_700_000_000_000_000;
        let mut d = Days::default();
        d.tally(Tally::SessionStarted, t0);
        d.tally(Tally::CustomerMessage, t0);
        d.tally(Tally::CustomerMessage, t0 + DAY_S * 1_000_000);
        let u = Name::new("u3");
        d.tally(Tally::Assigned(&u), t0);
        d.tally(Tally::Handed(&u), t0);
        d.tally(Tally::Upgraded, t0);
        d.tally(Tally::MemberInvited { by: &u, new_customer: true, new_pair: false }, t0);
        let day = day_of(t0);
        assert_eq!(d.corp[&day].upgrade_service_customer_cnt, 1);
        let s = d.servicers[&day][&u];
        let upgrades = (s.upgrade_service_member_invite_cnt, s.upgrade_service_customer_cnt);
        assert_eq!((upgrades, s.upgrade_service_member_customer_cnt), ((1, 1), 0));
        assert_eq!((d.corp[&day].session_cnt, d.corp[&day].customer_msg_cnt), (1, 1));
        assert_eq!(d.corp[&(day + DAY_S)].customer_msg_cnt, 1);
        assert_eq!(d.servicers[&day][&u].customer_msg_cnt, 1);
        d.expire(t0 + (KEEP_DAYS + 1) * DAY_S * 1_000_000);
        assert!(!d.corp.contains_key(&day) && d.corp.contains_key(&(day + DAY_S)));
        assert!(d.servicers.is_empty());
    }
}
