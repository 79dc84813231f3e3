//! What the service stores and sends: message contents (every WeCom
//! `msgtype` kfsim knows), messages, system events, session notes for the
//! simulation ports, and their JSON shapes.
//!
//! Stored records are shared (`Arc`) between the account log, a servicer's
//! queue and a customer channel's queue, so that a message is stored once
//! however many readers it has. Serialization happens outside the state
//! lock, which is why records carry names rather than indices; the ids
//! kfsim gives out fit a [`Name`] inline, so carrying them costs no
//! allocation and no shared count.

use std::sync::Arc;

use compact_str::CompactString;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::errors::{ApiError, code, limit, required};

/// A cheaply cloned name (open_kfid, external_userid, userid…): up to 24
/// bytes, every id kfsim makes, are stored inline. A shared `Arc<str>`
/// made each clone an atomic count on the string's own cache line, a miss
/// per message for a customer's ids among many customers; longer names
/// (callers' client_msgid, long userids) are copied on clone instead, and
/// they are rarely cloned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name(CompactString);

impl Name {
    /// A new name.
    pub fn new(s: &str) -> Name {
        Name(CompactString::new(s))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name::new(s)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// `text`: `content`, and `menu_id` when it answers a menu click.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Text {
    /// The text (≤ 2048 bytes).
    #[serde(default)]
    pub content: String,
    /// The menu item clicked, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub menu_id: Option<String>,
}

/// `image`, `voice`, `video`, `file`: a media id.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Media {
    /// Temporary media id (≤ 256 bytes).
    #[serde(default)]
    pub media_id: String,
}

/// `location`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Location {
    /// Place name.
    #[serde(default)]
    pub name: String,
    /// Address.
    #[serde(default)]
    pub address: String,
    /// −90..=90.
    pub latitude: f64,
    /// −180..=180.
    pub longitude: f64,
}

/// `link` (图文链接).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Link {
    /// ≤ 128 bytes.
    #[serde(default)]
    pub title: String,
    /// ≤ 512 bytes.
    #[serde(default)]
    pub desc: String,
    /// ≤ 2048 bytes.
    #[serde(default)]
    pub url: String,
    /// Picture URL (received links).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pic_url: String,
    /// Thumbnail media (sent links).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub thumb_media_id: String,
}

/// `business_card`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct BusinessCard {
    /// The member the card shows.
    #[serde(default)]
    pub userid: String,
}

/// `ca_link` (获客链接): a customer-acquisition link the enterprise sends.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CaLink {
    /// The link (≤ 2048 bytes).
    #[serde(default)]
    pub link_url: String,
}

/// `miniprogram`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Miniprogram {
    /// ≤ 64 bytes.
    #[serde(default)]
    pub title: String,
    /// The mini program's appid.
    #[serde(default)]
    pub appid: String,
    /// Page path.
    #[serde(default)]
    pub pagepath: String,
    /// Thumbnail media id.
    #[serde(default)]
    pub thumb_media_id: String,
}

/// `msgmenu`: a head, up to 10 items (kept as sent), a tail.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Msgmenu {
    /// ≤ 1024 bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub head_content: String,
    /// Menu items (`click`, `view`, `miniprogram`, `text`), checked and
    /// kept with their known fields only.
    #[serde(default, deserialize_with = "super::http::null_is_default")]
    pub list: Vec<serde_json::Value>,
    /// ≤ 1024 bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tail_content: String,
}

/// A message's content, one variant per `msgtype`.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// `text`.
    Text(Text),
    /// `image`.
    Image(Media),
    /// `voice`.
    Voice(Media),
    /// `video`.
    Video(Media),
    /// `file`.
    File(Media),
    /// `location`.
    Location(Location),
    /// `link`.
    Link(Link),
    /// `business_card`.
    BusinessCard(BusinessCard),
    /// `miniprogram`.
    Miniprogram(Miniprogram),
    /// `msgmenu`.
    Msgmenu(Msgmenu),
    /// `ca_link`.
    CaLink(CaLink),
}

impl Content {
    /// A text message.
    pub fn text(content: impl Into<String>) -> Content {
        Content::Text(Text { content: content.into(), menu_id: None })
    }

    /// The `msgtype` name.
    pub fn msgtype(&self) -> &'static str {
        match self {
            Content::Text(_) => "text",
            Content::Image(_) => "image",
            Content::Voice(_) => "voice",
            Content::Video(_) => "video",
            Content::File(_) => "file",
            Content::Location(_) => "location",
            Content::Link(_) => "link",
            Content::BusinessCard(_) => "business_card",
            Content::Miniprogram(_) => "miniprogram",
            Content::Msgmenu(_) => "msgmenu",
            Content::CaLink(_) => "ca_link",
        }
    }

    /// Write `"msgtype": …` and `"<msgtype>": {…}` into a JSON object.
    fn write<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        let t = self.msgtype();
        map.serialize_entry("msgtype", t)?;
        match self {
            Content::Text(v) => map.serialize_entry(t, v),
            Content::Image(v) | Content::Voice(v) | Content::Video(v) | Content::File(v) => {
                map.serialize_entry(t, v)
            }
            Content::Location(v) => map.serialize_entry(t, v),
            Content::Link(v) => map.serialize_entry(t, v),
            Content::BusinessCard(v) => map.serialize_entry(t, v),
            Content::Miniprogram(v) => map.serialize_entry(t, v),
            Content::Msgmenu(v) => map.serialize_entry(t, v),
            Content::CaLink(v) => map.serialize_entry(t, v),
        }
    }
}

/// Who may send which msgtypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A WeChat customer: the nine types of `scenario::MSG_TYPES`.
    Customer,
    /// `send_msg` and servicer replies: text, image, voice, video, file,
    /// link, miniprogram, msgmenu, location, ca_link.
    Enterprise,
    /// `send_msg_on_event`: text and msgmenu.
    OnEvent,
}

/// Declares a request whose own fields are followed by the content fields
/// of a message (`msgtype` and the object of that name), with `content()`
/// to move them out as a [`ContentIn`]. The request is read in one pass:
/// with a `#[serde(flatten)] ContentIn` field, serde first copied every key
/// and value of the request into a buffer and then read both parts from it
/// (callgrind: about 2 500 instructions of a customer message's 58 500).
macro_rules! with_content {
    (@decl $(#[$m:meta])* $vis:vis struct $name:ident { $($head:tt)* }) => {
        $(#[$m])*
        $vis struct $name {
            $($head)*
            #[serde(default)]
            pub(in crate::service) msgtype: String,
            pub(in crate::service) text: Option<$crate::service::model::Text>,
            pub(in crate::service) image: Option<$crate::service::model::Media>,
            pub(in crate::service) voice: Option<$crate::service::model::Media>,
            pub(in crate::service) video: Option<$crate::service::model::Media>,
            pub(in crate::service) file: Option<$crate::service::model::Media>,
            pub(in crate::service) location: Option<$crate::service::model::Location>,
            pub(in crate::service) link: Option<$crate::service::model::Link>,
            pub(in crate::service) business_card: Option<$crate::service::model::BusinessCard>,
            pub(in crate::service) miniprogram: Option<$crate::service::model::Miniprogram>,
            pub(in crate::service) msgmenu: Option<$crate::service::model::Msgmenu>,
            pub(in crate::service) ca_link: Option<$crate::service::model::CaLink>,
        }
    };
    ($(#[$m:meta])* struct $name:ident { $($head:tt)* }) => {
        $crate::service::model::with_content!(@decl $(#[$m])* struct $name { $($head)* });
        impl $name {
            /// The content fields, moved out (the request keeps empty ones).
            fn content(&mut self) -> $crate::service::model::ContentIn {
                $crate::service::model::ContentIn {
                    msgtype: std::mem::take(&mut self.msgtype),
                    text: self.text.take(),
                    image: self.image.take(),
                    voice: self.voice.take(),
                    video: self.video.take(),
                    file: self.file.take(),
                    location: self.location.take(),
                    link: self.link.take(),
                    business_card: self.business_card.take(),
                    miniprogram: self.miniprogram.take(),
                    msgmenu: self.msgmenu.take(),
                    ca_link: self.ca_link.take(),
                }
            }
        }
    };
}
pub(super) use with_content;

with_content!(@decl
    /// The content fields of a request: `msgtype` and the object of that name.
    #[derive(Debug, Default, Deserialize)]
    pub struct ContentIn {}
);

impl ContentIn {
    /// Check and convert: the msgtype is allowed for `sender`, its object is
    /// present, and its fields are within WeCom's limits.
    pub fn into_content(self, sender: Sender) -> Result<Content, ApiError> {
        let t = self.msgtype.as_str();
        if t.is_empty() {
            return Err(ApiError::missing("msgtype"));
        }
        let allowed: &[&str] = match sender {
            Sender::Customer => &crate::scenario::MSG_TYPES,
            Sender::Enterprise => &[
                "text",
                "image",
                "voice",
                "video",
                "file",
                "link",
                "miniprogram",
                "msgmenu",
                "location",
                "ca_link",
            ],
            Sender::OnEvent => &["text", "msgmenu"],
        };
        if !allowed.contains(&t) {
            return Err(ApiError::new(
                code::INVALID_MSGTYPE,
                format!("invalid msgtype `{t}`; allowed here: {}", allowed.join(", ")),
            ));
        }
        let missing = || ApiError::missing(t);
        let content = match t {
            "text" => Content::Text(self.text.ok_or_else(missing)?),
            "image" => Content::Image(self.image.ok_or_else(missing)?),
            "voice" => Content::Voice(self.voice.ok_or_else(missing)?),
            "video" => Content::Video(self.video.ok_or_else(missing)?),
            "file" => Content::File(self.file.ok_or_else(missing)?),
            "location" => Content::Location(self.location.ok_or_else(missing)?),
            "link" => Content::Link(self.link.ok_or_else(missing)?),
            "business_card" => Content::BusinessCard(self.business_card.ok_or_else(missing)?),
            "miniprogram" => Content::Miniprogram(self.miniprogram.ok_or_else(missing)?),
            "ca_link" => Content::CaLink(self.ca_link.ok_or_else(missing)?),
            _ => {
                let mut menu = self.msgmenu.ok_or_else(missing)?;
                if menu.list.len() > 10 {
                    return Err(ApiError::param("msgmenu.list has more than 10 items"));
                }
                menu.list =
                    menu.list.iter().enumerate().map(|(i, v)| menu_item(i, v)).collect::<Result<_, _>>()?;
                Content::Msgmenu(menu)
            }
        };
        check_limits(&content)?;
        Ok(content)
    }
}

/// A field of a msgmenu item: name, most bytes (0: the number
/// `no_newline`), required.
type MenuField = (&'static str, usize, bool);

/// The fields of each msgmenu item type, with their limits in bytes
/// (`shared/reference/wechat-kf-api.md`; where it gives none, the 1024 of
/// the menu's own head and tail) and whether they are required.
const MENU_ITEMS: &[(&str, &[MenuField])] = &[
    ("click", &[("id", 128, true), ("content", 1024, true)]),
    ("view", &[("url", 2048, true), ("content", 1024, true)]),
    ("miniprogram", &[("appid", 64, true), ("pagepath", 1024, true), ("content", 1024, true)]),
    ("text", &[("content", 256, true), ("no_newline", 0, false)]),
];

/// One msgmenu item checked against WeCom's item types and limits, and
/// rebuilt from its known fields only: a store keeps no junk a client
/// attached (500 calls with 1 MB items took 480 MB).
///
/// A value of the wrong JSON type is 47001, as it is everywhere else in a
/// body (serde's reading); a value of the right type that WeCom refuses
/// (an unknown item type, a field too long) is 40058.
fn menu_item(i: usize, v: &serde_json::Value) -> Result<serde_json::Value, ApiError> {
    let at = format!("msgmenu.list[{i}]");
    let wrong = |field: &str, want: &str| ApiError::bad_json(format!("`{field}` must be {want}"));
    let Some(item) = v.as_object() else { return Err(wrong(&at, "a JSON object")) };
    let kind = match item.get("type") {
        None => return Err(ApiError::missing(&format!("{at}.type"))),
        Some(serde_json::Value::String(k)) => k.as_str(),
        Some(_) => return Err(wrong(&format!("{at}.type"), "a string")),
    };
    let Some((_, fields)) = MENU_ITEMS.iter().find(|(k, _)| *k == kind) else {
        return Err(ApiError::param(format!("{at}.type must be click, view, miniprogram or text")));
    };
    let body = match item.get(kind) {
        None => return Err(ApiError::missing(&format!("{at}.{kind}"))),
        Some(serde_json::Value::Object(b)) => b,
        Some(_) => return Err(wrong(&format!("{at}.{kind}"), "a JSON object")),
    };
    let mut out = serde_json::Map::new();
    for &(name, max, needed) in *fields {
        let field = format!("{at}.{kind}.{name}");
        match body.get(name) {
            None if needed => return Err(ApiError::missing(&field)),
            None => {}
            Some(serde_json::Value::String(text)) if max > 0 => {
                if needed {
                    required(&field, text, max)?;
                } else {
                    limit(&field, text, max)?;
                }
                out.insert(name.into(), text.as_str().into());
            }
            Some(_) if max > 0 => return Err(wrong(&field, "a string")),
            // no_newline: 0 or 1
            Some(n) if n.as_u64().is_some_and(|n| n <= 1) => {
                out.insert(name.into(), n.clone());
            }
            Some(serde_json::Value::Number(_)) => {
                return Err(ApiError::param(format!("{field} must be 0 or 1")));
            }
            Some(_) => return Err(wrong(&field, "a number")),
        }
    }
    Ok(serde_json::json!({ "type": kind, kind: out }))
}

fn check_limits(c: &Content) -> Result<(), ApiError> {
    match c {
        Content::Text(t) => {
            required("text.content", &t.content, 2048)?;
            limit("text.menu_id", t.menu_id.as_deref().unwrap_or(""), 128)
        }
        Content::Image(m) | Content::Voice(m) | Content::Video(m) | Content::File(m) => {
            required("media_id", &m.media_id, 256).map(drop)
        }
        Content::Location(l) => {
            if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude) {
                return Err(ApiError::param(
                    "location: latitude must be in −90..90 and longitude in −180..180",
                ));
            }
            limit("location.name", &l.name, 256)?;
            limit("location.address", &l.address, 512)
        }
        Content::Link(l) => {
            required("link.title", &l.title, 128)?;
            limit("link.desc", &l.desc, 512)?;
            required("link.url", &l.url, 2048)?;
            limit("link.pic_url", &l.pic_url, 2048)
        }
        Content::BusinessCard(b) => required("business_card.userid", &b.userid, 64).map(drop),
        Content::Miniprogram(m) => {
            limit("miniprogram.title", &m.title, 64)?;
            required("miniprogram.appid", &m.appid, 64)?;
            required("miniprogram.pagepath", &m.pagepath, 1024).map(drop)
        }
        Content::Msgmenu(m) => {
            limit("msgmenu.head_content", &m.head_content, 1024)?;
            limit("msgmenu.tail_content", &m.tail_content, 1024)
        }
        Content::CaLink(l) => required("ca_link.link_url", &l.link_url, 2048).map(drop),
    }
}

/// Where a message to or from a customer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The customer (WeCom origin 3).
    Customer,
    /// A servicer from the WeCom client (origin 5).
    Servicer,
    /// The enterprise API (`send_msg`, `send_msg_on_event`): not in sync_msg.
    Api,
}

impl Origin {
    fn code(self) -> u8 {
        match self {
            Origin::Customer => 3,
            Origin::Servicer => 5,
            Origin::Api => 0,
        }
    }
}

/// A message of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    /// Server-assigned (or, for `send_msg`, client-chosen) id.
    pub msgid: Name,
    /// The account.
    pub open_kfid: Name,
    /// The customer.
    pub external_userid: Name,
    /// The customer's handle on its simulation channel.
    pub customer: Name,
    /// Who sent it.
    pub origin: Origin,
    /// The servicer who sent it (origin 5).
    pub servicer_userid: Option<Name>,
    /// Unix time [s].
    pub send_time: u64,
    /// The id the sending client gave it, echoed to every reader.
    pub client_msgid: Option<Box<str>>,
    /// For a reply: the `client_msgid` of the customer message it answers.
    pub in_reply_to: Option<Box<str>>,
    /// The content.
    pub content: Content,
}

/// Who changed a session's status, for `session_status_change`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event_type", rename_all = "snake_case")]
pub enum Event {
    /// A customer entered a session through a contact way.
    EnterSession {
        /// The account.
        open_kfid: Name,
        /// The customer.
        external_userid: Name,
        /// The contact way's scene.
        scene: String,
        /// The `scene_param` the customer came with.
        scene_param: String,
        /// Code for a welcome message (valid 20 s, once), when eligible.
        #[serde(skip_serializing_if = "Option::is_none")]
        welcome_code: Option<String>,
    },
    /// A servicer took a session from the pool (1), transferred it (2) or
    /// ended it (3).
    SessionStatusChange {
        /// The account.
        open_kfid: Name,
        /// The customer.
        external_userid: Name,
        /// 1 pool → servicer, 2 transfer, 3 end.
        change_type: u8,
        /// For 2 and 3.
        #[serde(skip_serializing_if = "Option::is_none")]
        old_servicer_userid: Option<Name>,
        /// For 1 and 2.
        #[serde(skip_serializing_if = "Option::is_none")]
        new_servicer_userid: Option<Name>,
        /// For 1 and 3: code for send_msg_on_event.
        #[serde(skip_serializing_if = "Option::is_none")]
        msg_code: Option<String>,
    },
    /// A servicer's reception status changed (1 接待中, 2 停止接待).
    ServicerStatusChange {
        /// The servicer.
        servicer_userid: Name,
        /// The account.
        open_kfid: Name,
        /// 1 接待中, 2 停止接待.
        status: u8,
        /// 0 停止接待, 1 暂时挂起.
        stop_type: u8,
    },
    /// A message could not be delivered.
    MsgSendFail {
        /// The account.
        open_kfid: Name,
        /// The customer.
        external_userid: Name,
        /// The message.
        fail_msgid: String,
        /// 0 未知原因.
        fail_type: u8,
    },
}

/// A system event in an account's log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRec {
    /// Its id (inline, as a message's: no allocation per event).
    pub msgid: Name,
    /// Unix time [s].
    pub send_time: u64,
    /// The event.
    pub event: Event,
}

/// An entry of an account's message log (what `sync_msg` returns).
#[derive(Debug, Clone, PartialEq)]
pub enum SyncEntry {
    /// A customer message (origin 3) or servicer message (origin 5).
    Msg(Arc<Msg>),
    /// A system event (origin 4).
    Event(Arc<EventRec>),
}

impl Serialize for SyncEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self {
            SyncEntry::Msg(m) => write_msg(&mut map, m)?,
            SyncEntry::Event(e) => {
                map.serialize_entry("msgid", &e.msgid)?;
                map.serialize_entry("send_time", &e.send_time)?;
                map.serialize_entry("origin", &4)?;
                map.serialize_entry("msgtype", "event")?;
                map.serialize_entry("event", &e.event)?;
            }
        }
        map.end()
    }
}

fn write_msg<M: SerializeMap>(map: &mut M, m: &Msg) -> Result<(), M::Error> {
    map.serialize_entry("msgid", &m.msgid)?;
    map.serialize_entry("open_kfid", &m.open_kfid)?;
    map.serialize_entry("external_userid", &m.external_userid)?;
    map.serialize_entry("send_time", &m.send_time)?;
    map.serialize_entry("origin", &m.origin.code())?;
    if let Some(s) = &m.servicer_userid {
        map.serialize_entry("servicer_userid", s)?;
    }
    if let Some(c) = &m.client_msgid {
        map.serialize_entry("client_msgid", c)?;
    }
    if let Some(r) = &m.in_reply_to {
        map.serialize_entry("in_reply_to", r)?;
    }
    m.content.write(map)
}

/// How a session changed, as the simulation ports report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Put in the waiting pool (state 2).
    Queued,
    /// Given to a servicer (state 3).
    Assigned,
    /// The pool was full: the session ended at once.
    Rejected,
    /// Moved from one servicer to another or back to the pool.
    Transferred,
    /// Ended (state 4).
    Ended,
}

/// A session change as the simulation ports report it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionNote {
    /// The account.
    pub open_kfid: Name,
    /// The customer.
    pub external_userid: Name,
    /// The customer's handle on its channel.
    pub customer: Name,
    /// What happened.
    pub change: Change,
    /// The state afterwards.
    pub service_state: u8,
    /// The servicer holding it afterwards (state 3).
    pub servicer_userid: Option<Name>,
    /// The servicer who held it before (transfer, end).
    pub old_servicer_userid: Option<Name>,
    /// Transferred to another account (a simulation-port transfer): the
    /// customer's conversation goes on there.
    pub to_open_kfid: Option<Name>,
    /// Why it ended: `servicer`, `api`, `idle`, `left`, `rejected`,
    /// `account_deleted`, `servicer_removed`.
    pub reason: Option<&'static str>,
    /// Unix time [s].
    pub send_time: u64,
}

/// An entry of a simulation-port queue (a customer channel or a servicer).
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A message: to the customer (replies) or to the servicer (customer
    /// messages).
    Msg(Arc<Msg>),
    /// A session change.
    Session(Arc<SessionNote>),
}

/// An item with its sequence number, as the pull endpoints write it, and
/// on a channel that carries servicers, the servicer it is for (`to`).
pub struct Numbered<'a>(pub u64, pub &'a Item, pub Option<&'a Name>);

impl Serialize for Numbered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("seq", &self.0)?;
        if let Some(to) = self.2 {
            map.serialize_entry("to", to)?;
        }
        match self.1 {
            Item::Msg(m) => {
                map.serialize_entry("kind", "message")?;
                map.serialize_entry("customer", &m.customer)?;
                let sender = match m.origin {
                    Origin::Customer => "customer",
                    Origin::Servicer => "servicer",
                    Origin::Api => "api",
                };
                map.serialize_entry("sender", sender)?;
                write_msg(&mut map, m)?;
            }
            Item::Session(n) => {
                map.serialize_entry("kind", "session")?;
                write_note(&mut map, n)?;
            }
        }
        map.end()
    }
}

fn write_note<M: SerializeMap>(map: &mut M, n: &SessionNote) -> Result<(), M::Error> {
    map.serialize_entry("customer", &n.customer)?;
    map.serialize_entry("open_kfid", &n.open_kfid)?;
    map.serialize_entry("external_userid", &n.external_userid)?;
    map.serialize_entry("change", &n.change)?;
    map.serialize_entry("service_state", &n.service_state)?;
    if let Some(s) = &n.servicer_userid {
        map.serialize_entry("servicer_userid", s)?;
    }
    if let Some(s) = &n.old_servicer_userid {
        map.serialize_entry("old_servicer_userid", s)?;
    }
    if let Some(k) = &n.to_open_kfid {
        map.serialize_entry("to_open_kfid", k)?;
    }
    if let Some(r) = n.reason {
        map.serialize_entry("reason", r)?;
    }
    map.serialize_entry("send_time", &n.send_time)
}

/// What a stored message costs beyond its content: its ids, names and
/// bookkeeping [bytes].
pub(super) const MSG_OVERHEAD: usize = 256;

impl Content {
    /// About how many bytes it holds (for the byte budget of queues).
    pub fn weight(&self) -> usize {
        match self {
            Content::Text(t) => t.content.len() + t.menu_id.as_ref().map_or(0, String::len),
            Content::Image(m) | Content::Voice(m) | Content::Video(m) | Content::File(m) => m.media_id.len(),
            Content::Location(l) => l.name.len() + l.address.len() + 16,
            Content::Link(l) => {
                l.title.len() + l.desc.len() + l.url.len() + l.pic_url.len() + l.thumb_media_id.len()
            }
            Content::BusinessCard(b) => b.userid.len(),
            Content::CaLink(l) => l.link_url.len(),
            Content::Miniprogram(m) => {
                m.title.len() + m.appid.len() + m.pagepath.len() + m.thumb_media_id.len()
            }
            // validated items of at most a few KB: their text form is near
            // enough, and menus are rare
            Content::Msgmenu(m) => {
                m.head_content.len()
                    + m.tail_content.len()
                    + m.list.iter().map(|v| v.to_string().len()).sum::<usize>()
            }
        }
    }
}

impl super::feed::Weigh for Msg {
    fn weight(&self) -> usize {
        MSG_OVERHEAD + self.content.weight()
    }
}

impl super::feed::Weigh for Item {
    fn weight(&self) -> usize {
        match self {
            Item::Msg(m) => m.weight(),
            Item::Session(_) => MSG_OVERHEAD,
        }
    }
}

impl super::feed::Weigh for SyncEntry {
    fn weight(&self) -> usize {
        match self {
            SyncEntry::Msg(m) => m.weight(),
            SyncEntry::Event(_) => MSG_OVERHEAD,
        }
    }
}

impl super::feed::Weigh for (Option<Name>, Item) {
    fn weight(&self) -> usize {
        self.1.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> ContentIn {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_customer_msgtype_is_accepted_and_echoed() {
        let cases = [
            r#"{"msgtype":"text","text":{"content":"hi"}}"#,
            r#"{"msgtype":"image","image":{"media_id":"m1"}}"#,
            r#"{"msgtype":"voice","voice":{"media_id":"m1"}}"#,
            r#"{"msgtype":"video","video":{"media_id":"m1"}}"#,
            r#"{"msgtype":"file","file":{"media_id":"m1"}}"#,
            r#"{"msgtype":"location","location":{"latitude":23.1,"longitude":113.3,"name":"a","address":"b"}}"#,
            r#"{"msgtype":"link","link":{"title":"t","desc":"d","url":"https://x","pic_url":"https://p"}}"#,
            r#"{"msgtype":"business_card","business_card":{"userid":"u1"}}"#,
            r#"{"msgtype":"miniprogram","miniprogram":{"title":"t","appid":"wx1","pagepath":"p","thumb_media_id":"m"}}"#,
        ];
        for json in cases {
            let c = parse(json).into_content(Sender::Customer).unwrap_or_else(|e| panic!("{json}: {e}"));
            let m = Msg {
                msgid: "1".into(),
                open_kfid: Name::new("wk"),
                external_userid: Name::new("wm"),
                customer: Name::new("k"),
                origin: Origin::Customer,
                servicer_userid: None,
                send_time: 1,
                client_msgid: None,
                in_reply_to: None,
                content: c.clone(),
            };
            let out: serde_json::Value = serde_json::to_value(SyncEntry::Msg(Arc::new(m))).unwrap();
            let input: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(out["msgtype"], input["msgtype"]);
            assert_eq!(out[c.msgtype()], input[c.msgtype()], "{json}");
            assert_eq!(out["origin"], 3);
        }
    }

    #[test]
    fn msgtypes_are_checked_per_sender() {
        let card = r#"{"msgtype":"business_card","business_card":{"userid":"u"}}"#;
        assert_eq!(parse(card).into_content(Sender::Enterprise).unwrap_err().code, code::INVALID_MSGTYPE);
        let img = r#"{"msgtype":"image","image":{"media_id":"m"}}"#;
        assert_eq!(parse(img).into_content(Sender::OnEvent).unwrap_err().code, code::INVALID_MSGTYPE);
        let menu = r#"{"msgtype":"msgmenu","msgmenu":{"list":[]}}"#;
        assert!(parse(menu).into_content(Sender::OnEvent).is_ok());
        // 获客链接: the enterprise's to send, not a customer's
        let ca = r#"{"msgtype":"ca_link","ca_link":{"link_url":"https://work.weixin.qq.com/ca/cawcde"}}"#;
        let Content::CaLink(l) = parse(ca).into_content(Sender::Enterprise).unwrap() else { panic!() };
        assert_eq!(l.link_url, "https://work.weixin.qq.com/ca/cawcde");
        assert_eq!(parse(ca).into_content(Sender::Customer).unwrap_err().code, code::INVALID_MSGTYPE);
        let empty = r#"{"msgtype":"ca_link","ca_link":{}}"#;
        let e = parse(empty).into_content(Sender::Enterprise).unwrap_err();
        assert!(e.code == code::INVALID_PARAM && e.msg.contains("ca_link.link_url"), "{e}");
    }

    /// Issue 17, item 9: msgmenu items were stored as sent, of any type,
    /// size and fields.
    #[test]
    fn menu_items_are_checked_and_kept_without_junk() {
        let menu = |items: &str| format!(r#"{{"msgtype":"msgmenu","msgmenu":{{"list":[{items}]}}}}"#);
        let ok = menu(
            r#"{"type":"click","click":{"id":"1","content":"yes","junk":"x"},"junk":1},
               {"type":"text","text":{"content":"hi","no_newline":1}}"#,
        );
        let Content::Msgmenu(m) = parse(&ok).into_content(Sender::OnEvent).unwrap() else { panic!() };
        assert_eq!(
            serde_json::Value::Array(m.list),
            serde_json::json!([{"type": "click", "click": {"id": "1", "content": "yes"}},
                               {"type": "text", "text": {"content": "hi", "no_newline": 1}}])
        );
        let big = "x".repeat(1 << 20);
        for (items, want) in [
            (
                format!(r#"{{"type":"click","click":{{"id":"1","content":"{big}"}}}}"#),
                "list[0].click.content",
            ),
            (r#"{"type":"poll","poll":{}}"#.into(), "list[0].type"),
            (r#"{"type":"view","view":{"content":"c"}}"#.into(), "list[0].view.url"),
            (r#"{"type":"text","text":{"content":"c","no_newline":7}}"#.into(), "no_newline"),
            (r#"{"click":{"id":"1","content":"c"}}"#.into(), "list[0].type"),
        ] {
            let e = parse(&menu(&items)).into_content(Sender::OnEvent).unwrap_err();
            assert!(e.code == code::INVALID_PARAM && e.msg.contains(want), "{want}: {e}");
        }
        // a value of the wrong JSON type is 47001, as anywhere else in a body
        for (items, want) in [
            (r#""click""#, "list[0]`"),
            (r#"{"type":1,"click":{}}"#, "list[0].type"),
            (r#"{"type":"click","click":["1","c"]}"#, "list[0].click`"),
            (r#"{"type":"click","click":{"id":1,"content":"c"}}"#, "list[0].click.id"),
            (r#"{"type":"text","text":{"content":"c","no_newline":"1"}}"#, "no_newline"),
        ] {
            let e = parse(&menu(items)).into_content(Sender::OnEvent).unwrap_err();
            assert!(e.code == code::BAD_JSON && e.msg.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn missing_objects_and_limits_are_40058() {
        let no_obj = r#"{"msgtype":"text"}"#;
        assert_eq!(parse(no_obj).into_content(Sender::Customer).unwrap_err().code, code::INVALID_PARAM);
        let long = format!(r#"{{"msgtype":"text","text":{{"content":"{}"}}}}"#, "x".repeat(2049));
        let e = parse(&long).into_content(Sender::Customer).unwrap_err();
        assert!(e.code == code::INVALID_PARAM && e.msg.contains("2048"), "{e}");
        let far = r#"{"msgtype":"location","location":{"latitude":91,"longitude":0}}"#;
        assert_eq!(parse(far).into_content(Sender::Customer).unwrap_err().code, code::INVALID_PARAM);
        assert_eq!(parse("{}").into_content(Sender::Customer).unwrap_err().code, code::INVALID_PARAM);
    }
}
