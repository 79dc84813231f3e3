//! 升级服务 (upgrade service): `customer/get_upgrade_service_config`,
//! `customer/upgrade_service` and `customer/cancel_upgrade_service`. Part
//! of the pure state machine (`impl State`).
//!
//! kfsim's 升级服务 configuration is what it has: every servicer it knows
//! (added with `servicer/add`, or a scenario's agents) is a 专员, in no
//! department, so a middleware can upgrade a customer to one of its
//! servicers; it has no group chats, so a 客户群 upgrade is always 95021.
//!
//! An upgrade is kept on the session of its (account, customer), the latest
//! replacing the one before, and is forgotten with that session when the
//! retention forgets it: the service holds no table of upgrades that a
//! client could grow. Only customers with a session with the account may be
//! upgraded (40058 otherwise, as for an unknown customer).
//!
//! Statistics. WeCom counts 升级服务 per 接待人员: invitations are "接待人员通过
//! 「升级服务-专员服务」向客户发送服务专员名片的次数", and the customer figures
//! count customers who then added the 专员 (QQ-weixin-work's copy of
//! get_servicer_statistic's documentation). kfsim has neither the WeCom
//! client's card nor the customer's acceptance, so an upgrade stands for
//! both: it is an invitation of the servicer holding the session (state 3;
//! no servicer's figure when none does), accepted at once. Per CST day:
//! the account's `upgrade_service_customer_cnt` counts customers upgraded,
//! each once; a servicer's `upgrade_service_member_invite_cnt` every
//! upgrade, `upgrade_service_customer_cnt` customers, each once, and
//! `upgrade_service_member_customer_cnt` (customer, 专员) pairs, each once
//! (WeCom: "若同一个客户添加多个专员，则计算多个客户数"). A cancelled upgrade stays
//! counted.

use super::errors::{ApiError, code, required};
use super::model::Name;
use super::state::{State, at};
use super::stats::{Tally, day_of};

/// What was counted of one session's upgrades on one day: at most this many
/// (servicer, 专员) pairs. A customer upgraded to more than this many
/// 专员 in a day is an odd client; its further pairs are not counted as new.
const MAX_COUNTED: usize = 16;

/// A session's upgrade and what its day's figures have counted of it.
#[derive(Debug)]
pub(super) struct Upgrade {
    /// The 专员 recommended now; `None` once cancelled.
    pub(super) member: Option<Name>,
    /// The CST day `counted` is for.
    day: u64,
    /// `(servicer, 专员)` pairs counted on `day`, by userid (`None`: no
    /// servicer held the session). Not by user index: servicer/del frees
    /// an index that servicer/add gives to another userid the same day.
    counted: Vec<(Option<Name>, Name)>,
}

/// What a customer is upgraded to.
#[derive(Debug, Clone, Copy)]
pub enum UpgradeTo<'a> {
    /// type 1: a 专员, by userid.
    Member(&'a str),
    /// type 2: a 客户群, by chat_id.
    Groupchat(&'a str),
}

impl State {
    /// `customer/get_upgrade_service_config`'s 专员: every servicer's
    /// userid, sorted (the order of a table whose slots are reused says
    /// nothing).
    pub fn upgrade_member_range(&self) -> Vec<String> {
        let mut ids = self.servicer_ids();
        ids.sort_unstable();
        ids
    }

    /// The session of a customer with an account, for 升级服务: 95000/95004
    /// for the account, 40058 for a customer unknown or without a session
    /// with it.
    fn upgrade_session(&self, open_kfid: &str, external_userid: &str) -> Result<u32, ApiError> {
        let (_, conv) = self.conv_of(open_kfid, external_userid)?;
        conv.ok_or_else(|| {
            ApiError::param(format!(
                "invalid external_userid `{external_userid}`: no session with {open_kfid}"
            ))
        })
    }

    /// `customer/upgrade_service`: recommend a 专员 (the only kind kfsim
    /// has) to the customer, in place of any earlier recommendation.
    pub fn upgrade_service(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        to: UpgradeTo<'_>,
        now_us: u64,
    ) -> Result<(), ApiError> {
        let conv = self.upgrade_session(open_kfid, external_userid)?;
        let member = match to {
            UpgradeTo::Member(userid) => {
                required("member.userid", userid, 64)?;
                self.user_ix.get(userid).copied().ok_or_else(|| {
                    ApiError::new(
                        code::NOT_IN_UPGRADE_RANGE,
                        format!("userid {userid} is not configured in 升级服务 (kfsim: not a servicer)"),
                    )
                })?
            }
            UpgradeTo::Groupchat(chat_id) => {
                required("groupchat.chat_id", chat_id, 64)?;
                return Err(ApiError::new(
                    code::NOT_IN_UPGRADE_RANGE,
                    format!("chat_id {chat_id} is not configured in 升级服务 (kfsim has no group chats)"),
                ));
            }
        };
        let c = self.convs.get(conv).expect("conv");
        let (acct, state, slot) = (c.account, c.state, c.agent);
        let holder =
            slot.filter(|_| state == 3).and_then(|s| *self.accounts.get(acct)?.agents.get(s as usize)?);
        let name = at!(self.users, member).userid.clone();
        let by = holder.map(|h| at!(self.users, h).userid.clone());
        let day = day_of(now_us);
        let up = at!(self.convs, conv)
            .upgrade
            .get_or_insert_with(|| Box::new(Upgrade { member: None, day, counted: Vec::new() }));
        if up.day != day {
            up.day = day;
            up.counted.clear();
        }
        let first_today = up.counted.is_empty();
        // past the bound nothing is new: counting without remembering
        // would count the same pair again at the next upgrade
        let room = up.counted.len() < MAX_COUNTED;
        let new_customer = room && !up.counted.iter().any(|(s, _)| *s == by);
        let new_pair = room && !up.counted.iter().any(|(s, m)| *s == by && *m == name);
        if new_pair {
            up.counted.push((by, name.clone()));
        }
        up.member = Some(name);
        let days = &mut at!(self.accounts, acct).days;
        if first_today {
            days.tally(Tally::Upgraded, now_us);
        }
        if let Some(by) = holder {
            let by = &at!(self.users, by).userid;
            days.tally(Tally::MemberInvited { by, new_customer, new_pair }, now_us);
        }
        Ok(())
    }

    /// `customer/cancel_upgrade_service`: the customer's recommendation is
    /// cleared. Without one it is still ok: WeCom's documentation names no
    /// error for it, and a middleware that cancels twice meant the same.
    pub fn cancel_upgrade_service(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        now_us: u64,
    ) -> Result<(), ApiError> {
        let conv = self.upgrade_session(open_kfid, external_userid)?;
        let c = at!(self.convs, conv);
        match c.upgrade.as_deref_mut() {
            // what was counted today is kept, so that upgrading again today
            // counts the customer once
            Some(up) if up.day == day_of(now_us) => up.member = None,
            _ => c.upgrade = None,
        }
        Ok(())
    }

    /// The 专员 a customer is upgraded to now, if any (the API has no call
    /// that reads it back: tests do).
    #[cfg(test)]
    pub(super) fn upgraded_to(
        &self,
        open_kfid: &str,
        external_userid: &str,
    ) -> Result<Option<String>, ApiError> {
        let conv = self.upgrade_session(open_kfid, external_userid)?;
        let c = self.convs.get(conv).expect("conv");
        Ok(c.upgrade.as_ref().and_then(|u| u.member.as_ref()).map(|m| m.as_str().to_owned()))
    }
}
