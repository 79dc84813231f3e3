//! Administration through the enterprise API: accounts and their
//! reception rules, contact ways, servicers (接待人员) and customer
//! profiles. Part of the pure state machine (`impl State`).

use std::sync::Arc;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::Notify;

use super::errors::{ApiError, code, ident, limit, required};
use super::model::Name;
use super::state::{
    Account, AccountInfo, HashSet, MAX_SCENES, RecentIds, Rule, ServicerInfo, State, User, at,
};
use crate::reception::{Router, policy_for};

/// What a media_id keeps of itself in a URL's path segment: RFC 3986's
/// unreserved characters (a media_id is any string of ≤ 128 bytes).
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A valid scene: `[0-9a-zA-Z_-]{0,32}`.
fn check_scene(scene: &str) -> Result<(), ApiError> {
    if scene.is_empty() { Ok(()) } else { ident("scene", scene, 32).map(drop) }
}

/// A valid userid (WeCom: 1–64 bytes; kfsim also allows `.` and `@`).
pub(super) fn check_userid(userid: &str) -> Result<(), ApiError> {
    required("userid", userid, 64)?;
    if !userid.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b)) {
        return Err(ApiError::new(40003, format!("invalid userid `{userid}`")));
    }
    Ok(())
}

impl State {
    // ---- accounts ------------------------------------------------------

    pub(super) fn insert_account(&mut self, name: String, media_id: String, rule: Rule, now_us: u64) -> u32 {
        let _ = now_us;
        let open_kfid = format!("wk{}", self.new_id());
        let router = Router::new(policy_for(rule.policy), &[], rule.queue_limit);
        let log = self.new_feed(self.cfg.sync_log_cap);
        let i = self.accounts.insert(Account {
            open_kfid: Name::new(&open_kfid),
            name,
            media_id,
            rule,
            router,
            agents: Vec::new(),
            scenes: HashSet::default(),
            log,
            synced_upto: 0,
            sent_ids: RecentIds::default(),
            by_state: [0; 4],
            owed: Default::default(),
            days: Default::default(),
        });
        self.account_ix.insert(open_kfid.into(), i);
        i
    }

    /// The account of an `open_kfid`: 95000 if malformed, 95004 if unknown.
    pub(super) fn account_of(&self, open_kfid: &str) -> Result<u32, ApiError> {
        if open_kfid.is_empty() {
            return Err(ApiError::missing("open_kfid"));
        }
        if open_kfid.len() > 64 || !open_kfid.starts_with("wk") {
            return Err(ApiError::new(code::INVALID_OPEN_KFID, format!("invalid open_kfid `{open_kfid}`")));
        }
        self.account_ix.get(open_kfid).copied().ok_or_else(|| ApiError::no_account(open_kfid))
    }

    /// `account/add`: name ≤ 16 characters, media_id ≤ 128 bytes, at most
    /// 5000 accounts. Returns the open_kfid.
    pub fn account_add(
        &mut self,
        name: &str,
        media_id: &str,
        rule: Option<Rule>,
        now_us: u64,
    ) -> Result<String, ApiError> {
        check_account_name(name)?;
        limit("media_id", media_id, 128)?;
        let rule = rule.unwrap_or_default();
        check_rule(&rule)?;
        if self.accounts.len() >= 5000 {
            return Err(ApiError::new(code::LIMIT, "a corp may have at most 5000 accounts"));
        }
        let i = self.insert_account(name.into(), media_id.into(), rule, now_us);
        Ok(self.accounts.get(i).map(|a| a.open_kfid.as_str().to_owned()).unwrap_or_default())
    }

    /// `account/update`: change the name, avatar or (kfsim) reception rule;
    /// an omitted field is kept. A new rule keeps the servicers, their
    /// sessions and the waiting pool's order.
    pub fn account_update(
        &mut self,
        open_kfid: &str,
        name: Option<&str>,
        media_id: Option<&str>,
        rule: Option<Rule>,
        now_us: u64,
    ) -> Result<(), ApiError> {
        let i = self.account_of(open_kfid)?;
        if let Some(n) = name {
            check_account_name(n)?;
        }
        limit("media_id", media_id.unwrap_or(""), 128)?;
        if let Some(r) = &rule {
            check_rule(r)?;
        }
        let a = at!(self.accounts, i);
        if let Some(n) = name {
            a.name = n.into();
        }
        if let Some(m) = media_id {
            a.media_id = m.into();
        }
        if let Some(r) = rule {
            self.replace_rule(i, r, now_us);
        }
        Ok(())
    }

    /// `account/list`: `offset` ≥ 0, `limit` 1–100 (default 100). An
    /// account's avatar is a URL on this service, whose address a client
    /// reaches it by is `origin` (`http://host:port`): SDK users fetch and
    /// check avatars as http(s) URLs. It names the media_id, so that a new
    /// avatar is a new URL, as on WeCom's image servers.
    pub fn account_list(&self, offset: usize, limit: usize, origin: &str) -> Vec<AccountInfo> {
        self.accounts
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(_, a)| AccountInfo {
                open_kfid: a.open_kfid.as_str().into(),
                name: a.name.clone(),
                avatar: {
                    let media_id = utf8_percent_encode(a.avatar_id(), PATH_SEGMENT);
                    format!("{origin}/avatar/{}/{media_id}", a.open_kfid.as_str())
                },
                manage_privilege: true,
                reception_rule: a.rule.clone(),
            })
            .collect()
    }

    /// `add_contact_way`: a URL for the account with `scene`.
    pub fn add_contact_way(&mut self, open_kfid: &str, scene: &str) -> Result<String, ApiError> {
        let i = self.account_of(open_kfid)?;
        check_scene(scene)?;
        let a = at!(self.accounts, i);
        if !a.scenes.contains(scene) {
            if a.scenes.len() >= MAX_SCENES {
                let text = format!("an account keeps at most {MAX_SCENES} contact-way scenes");
                return Err(ApiError::new(code::LIMIT, text));
            }
            a.scenes.insert(scene.into());
        }
        let id = &a.open_kfid.as_str()[2..];
        Ok(if scene.is_empty() {
            format!("https://work.weixin.qq.com/kf/kfc{id}")
        } else {
            format!("https://work.weixin.qq.com/kf/kfc{id}?enc_scene=ENC{scene}")
        })
    }

    // ---- servicers -----------------------------------------------------

    /// The user of a servicer userid: 95014 if there is none.
    pub(super) fn user_of(&self, userid: &str) -> Result<u32, ApiError> {
        if userid.is_empty() {
            return Err(ApiError::missing("servicer_userid"));
        }
        self.user_ix.get(userid).copied().ok_or_else(|| {
            ApiError::new(code::NOT_SERVICER, format!("{userid} is not a servicer (接待人员)"))
        })
    }

    /// Add `userid` to an account with cap `cap`, 接待中. `false` if it is
    /// a member already.
    pub(super) fn add_member(&mut self, acct: u32, userid: &str, cap: u32, now_us: u64) -> bool {
        let user = match self.user_ix.get(userid) {
            Some(&u) => u,
            None => {
                let feed = self.new_feed(self.cfg.servicer_queue_cap);
                let u = self.users.insert(User {
                    userid: Name::new(userid),
                    status: 0,
                    stop_type: 0,
                    memberships: Vec::new(),
                    feed,
                    notify: Arc::new(Notify::new()),
                    dirty: false,
                    auto_due: false,
                    recent: RecentIds::default(),
                    channel: None,
                });
                self.user_ix.insert(userid.into(), u);
                u
            }
        };
        if at!(self.users, user).memberships.iter().any(|&(a, _)| a == acct) {
            return false;
        }
        // a servicer of several accounts has one load: it joins holding
        // what it holds elsewhere
        let held = at!(self.users, user)
            .memberships
            .first()
            .and_then(|&(a, s)| Some(self.accounts.get(a)?.router.agents()[s as usize].load))
            .unwrap_or(0);
        let a = at!(self.accounts, acct);
        // Reuse a place left by a removed servicer once its sessions are
        // gone, so the router does not grow with churn.
        let slot = match a.agents.iter().position(|s| s.is_none()) {
            Some(p) if a.router.agents()[p].load == 0 => p,
            _ => {
                a.agents.push(None);
                a.router.add_agent(cap)
            }
        };
        a.agents[slot] = Some(user);
        for _ in 0..held {
            a.router.occupy(slot);
        }
        let mut out = Vec::new();
        a.router.set_cap(slot, cap, now_us, &mut out);
        at!(self.users, user).memberships.push((acct, slot as u32));
        let online = at!(self.users, user).status == 0;
        at!(self.accounts, acct).router.set_online(slot, online, now_us, &mut out);
        self.deliver_pool_exits(acct, out, now_us);
        true
    }

    /// `servicer/add`: per userid a result `(userid, errcode, errmsg)`.
    /// `max_concurrent` (kfsim extension) defaults to the account rule's,
    /// then to the config's. At most 100 per call and 2000 per account.
    pub fn servicer_add(
        &mut self,
        open_kfid: &str,
        userids: &[String],
        max_concurrent: Option<u32>,
        now_us: u64,
    ) -> Result<Vec<(String, i32, String)>, ApiError> {
        let acct = self.account_of(open_kfid)?;
        check_userid_list(userids)?;
        let a = at!(self.accounts, acct);
        let cap = max_concurrent.or(a.rule.max_concurrent).unwrap_or(self.cfg.default_max_concurrent);
        if !(1..=10_000).contains(&cap) {
            return Err(ApiError::param("max_concurrent must be between 1 and 10000"));
        }
        let mut out = Vec::with_capacity(userids.len());
        for u in userids {
            let r = match check_userid(u) {
                Err(e) => (u.clone(), e.code, e.msg.into_owned()),
                Ok(()) if at!(self.accounts, acct).members() >= 2000 => {
                    (u.clone(), code::LIMIT, "an account may have at most 2000 servicers".into())
                }
                Ok(()) if self.add_member(acct, u, cap, now_us) => (u.clone(), 0, "success".into()),
                Ok(()) => (u.clone(), 0, "ignored: already a servicer of this account".into()),
            };
            out.push(r);
        }
        Ok(out)
    }

    /// `servicer/list`.
    pub fn servicer_list(&self, open_kfid: &str) -> Result<Vec<ServicerInfo>, ApiError> {
        let acct = self.account_of(open_kfid)?;
        let a = self.accounts.get(acct).expect("account");
        let mut out = Vec::new();
        for (slot, user) in a.agents.iter().enumerate() {
            let Some(u) = user.and_then(|u| self.users.get(u)) else { continue };
            let st = a.router.agents()[slot];
            out.push(ServicerInfo {
                userid: u.userid.as_str().into(),
                status: u.status,
                stop_type: u.stop_type,
                max_concurrent: st.cap,
                sessions: st.load,
            });
        }
        Ok(out)
    }

    // ---- customers -----------------------------------------------------

    /// `customer/batchget`: profiles of known customers and the ids that
    /// are not, each id once, in the order first named (WeCom does not
    /// say what a repeated id does; a client joining the answer to its
    /// list by id should not meet one twice).
    pub fn customer_batchget(
        &self,
        ids: &[String],
        with_context: bool,
    ) -> (Vec<serde_json::Value>, Vec<String>) {
        let mut found = Vec::new();
        let mut invalid = Vec::new();
        let mut seen = HashSet::default();
        for id in ids.iter().filter(|id| seen.insert(id.as_str())) {
            match self.customer_of(id).and_then(|c| self.customers.get(c)) {
                Some(c) => {
                    let mut v = serde_json::json!({
                        "external_userid": c.external_userid,
                        "nickname": c.handle,
                        "avatar": "",
                        "gender": 0,
                        "unionid": "",
                    });
                    if with_context && let Some((scene, param)) = c.enter.as_deref() {
                        v["enter_session_context"] =
                            serde_json::json!({"scene": scene, "scene_param": param});
                    }
                    found.push(v);
                }
                None => invalid.push(id.clone()),
            }
        }
        (found, invalid)
    }
}

fn check_account_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::missing("name"));
    }
    if name.chars().count() > 16 {
        return Err(ApiError::param("invalid Request Parameter: `name` is longer than 16 characters"));
    }
    Ok(())
}

fn check_rule(rule: &Rule) -> Result<(), ApiError> {
    if rule.max_concurrent.is_some_and(|m| !(1..=10_000).contains(&m)) {
        return Err(ApiError::param("reception_rule.max_concurrent must be between 1 and 10000"));
    }
    Ok(())
}

fn check_userid_list(userids: &[String]) -> Result<(), ApiError> {
    if userids.is_empty() {
        return Err(ApiError::missing("userid_list"));
    }
    if userids.len() > 100 {
        return Err(ApiError::param("userid_list may have at most 100 userids"));
    }
    Ok(())
}
