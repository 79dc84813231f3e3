//! The simulation ports' messages as the driver writes and reads them
//! (`docs/protocol.md`). Typed rather than `serde_json::Value`: at
//! thousands of events a second, building and walking JSON trees was a
//! large share of the driver's time. Every answer field has a default, so
//! an error answer (`errcode`, `errmsg` only) still decodes and is counted
//! by its errcode.

use serde::{Deserialize, Serialize};

use super::http::Answer;

/// One item of a pull (`event_list[]`); fields the driver does not use
/// are skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Event {
    /// The item's place in its queue.
    pub seq: u64,
    /// On a servicer channel: the servicer the item is for.
    pub to: Option<String>,
    /// `message` or `session`.
    pub kind: String,
    pub customer: Option<String>,
    /// `customer`, `servicer` or `api` (messages).
    pub sender: Option<String>,
    /// `queued`, `assigned`, `rejected`, `transferred`, `ended` (sessions).
    pub change: Option<String>,
    pub reason: Option<String>,
    pub servicer_userid: Option<String>,
    pub open_kfid: Option<String>,
    pub external_userid: Option<String>,
    /// A message's id: the driver's bot answers carry theirs back.
    pub msgid: Option<String>,
    pub client_msgid: Option<String>,
    pub in_reply_to: Option<String>,
    /// A session transferred to another account (`transferred`).
    pub to_open_kfid: Option<String>,
}

/// The answer of a pull.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Pulled {
    pub errcode: i64,
    pub next_cursor: Option<String>,
    /// Items dropped before this reader got them (`null` taken as none:
    /// the count is not worth failing a pull over).
    pub missed: Option<u64>,
    pub event_list: Vec<Event>,
}

impl Answer for Pulled {
    fn errcode(&self) -> i64 {
        self.errcode
    }

    /// A pull without `next_cursor` cannot be followed.
    fn well_formed(&self) -> bool {
        self.next_cursor.is_some()
    }
}

/// The answer of a batch: one result per action, in order.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BatchAnswer {
    pub errcode: i64,
    /// `None` when the answer has none: not an answer of the protocol.
    pub results: Option<Vec<ActionResult>>,
    /// Customer batches, where the target says: the `seq` its channel's
    /// next event gets, as of the answer.
    pub channel_end: Option<u64>,
}

impl Answer for BatchAnswer {
    fn errcode(&self) -> i64 {
        self.errcode
    }

    fn well_formed(&self) -> bool {
        self.results.is_some()
    }
}

impl BatchAnswer {
    /// The results, counting in `stats` of `endpoint` an answer that does
    /// not give one per action (`results_mismatch`): its actions without a
    /// result are sent again, and a target that drops results does not
    /// look error-free (found by probing).
    pub fn results_of(
        self,
        actions: usize,
        stats: &super::http::HttpStats,
        endpoint: &'static str,
    ) -> Vec<ActionResult> {
        let results = self.results.unwrap_or_default();
        if results.len() != actions {
            stats.action_error(endpoint, "results_mismatch".into());
        }
        results
    }
}

/// One action's result.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct ActionResult {
    pub errcode: i64,
    /// The customer's id on the enterprise side (customer actions): the
    /// bot answers it through the enterprise API.
    pub external_userid: String,
}

/// The answer of `open_channel`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Opened {
    pub errcode: i64,
    pub channel_id: String,
}

impl Answer for Opened {
    fn errcode(&self) -> i64 {
        self.errcode
    }
}

/// A pull request.
#[derive(Serialize)]
pub(crate) struct Pull<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub channel_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub servicer_userid: &'a str,
    pub cursor: &'a str,
    pub limit: u32,
    pub timeout_ms: u32,
}

/// A message's content: `msgtype` and the object named by it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "msgtype", rename_all = "snake_case")]
pub(crate) enum Content {
    Text { text: Text },
    Image { image: Media },
    Voice { voice: Media },
    Video { video: Media },
    File { file: Media },
    Location { location: Location },
    Link { link: Link },
    BusinessCard { business_card: Card },
    Miniprogram { miniprogram: Miniprogram },
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Text {
    pub content: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Media {
    pub media_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Location {
    pub latitude: f64,
    pub longitude: f64,
    pub name: &'static str,
    pub address: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Link {
    pub title: &'static str,
    pub desc: &'static str,
    pub url: &'static str,
    pub pic_url: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Card {
    pub userid: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Miniprogram {
    pub title: &'static str,
    pub appid: &'static str,
    pub pagepath: &'static str,
    pub thumb_media_id: &'static str,
}

impl Content {
    /// Content of message type `name` (one of the scenario's `MSG_TYPES`)
    /// that names `id`, so a message can be recognised in logs.
    pub(crate) fn of(name: &str, id: &str) -> Content {
        let media = || Media { media_id: format!("kfsim-{id}") };
        match name {
            "text" => Content::Text { text: Text { content: format!("kfsim message {id}") } },
            "image" => Content::Image { image: media() },
            "voice" => Content::Voice { voice: media() },
            "video" => Content::Video { video: media() },
            "file" => Content::File { file: media() },
            "location" => Content::Location {
                location: Location { latitude: 23.1, longitude: 113.3, name: "kfsim", address: "kfsim" },
            },
            "link" => Content::Link {
                link: Link { title: "kfsim", desc: "kfsim", url: "https://example.com/kfsim", pic_url: "" },
            },
            "business_card" => Content::BusinessCard { business_card: Card { userid: "kfsim" } },
            _ => Content::Miniprogram {
                miniprogram: Miniprogram {
                    title: "kfsim",
                    appid: "wx0000000000000000",
                    pagepath: "pages/index",
                    thumb_media_id: "kfsim",
                },
            },
        }
    }
}

/// A customer action of `/sim/customer/batch`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum CustomerAction {
    Enter {
        customer: String,
        open_kfid: String,
        scene: String,
    },
    Message {
        customer: String,
        open_kfid: String,
        client_msgid: String,
        #[serde(flatten)]
        content: Content,
    },
    Leave {
        customer: String,
        open_kfid: String,
    },
}

/// A servicer action of `/sim/servicer/batch`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServicerAction {
    Reply {
        servicer_userid: String,
        open_kfid: String,
        external_userid: String,
        #[serde(flatten)]
        content: Content,
        in_reply_to: String,
        client_msgid: String,
    },
    End {
        servicer_userid: String,
        open_kfid: String,
        external_userid: String,
    },
    /// To another account (a simulation-port transfer).
    Transfer {
        servicer_userid: String,
        open_kfid: String,
        external_userid: String,
        to_open_kfid: String,
    },
}

/// A batch request.
#[derive(Serialize)]
pub(crate) struct Batch<'a, A> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub channel_id: &'a str,
    pub actions: &'a [A],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_serialize_as_the_protocol_says() {
        let a = CustomerAction::Message {
            customer: "c0-1".into(),
            open_kfid: "wk1".into(),
            client_msgid: "m1-0-2-5".into(),
            content: Content::of("text", "m1"),
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "message", "customer": "c0-1", "open_kfid": "wk1",
                "client_msgid": "m1-0-2-5", "msgtype": "text", "text": {"content": "kfsim message m1"}})
        );
        let v = serde_json::to_value(CustomerAction::Leave { customer: "c".into(), open_kfid: "k".into() })
            .unwrap();
        assert_eq!(v, serde_json::json!({"type": "leave", "customer": "c", "open_kfid": "k"}));
        let v = serde_json::to_value(Content::of("business_card", "x")).unwrap();
        assert_eq!(v, serde_json::json!({"msgtype": "business_card", "business_card": {"userid": "kfsim"}}));
        for t in crate::scenario::MSG_TYPES {
            let v = serde_json::to_value(Content::of(t, "x")).unwrap();
            assert_eq!(v["msgtype"], *t, "{t}");
            assert!(v[t].is_object(), "{t}: {v}");
        }
    }

    #[test]
    fn error_answers_decode_with_their_errcode() {
        let p: Pulled = serde_json::from_str(r#"{"errcode":40058,"errmsg":"bad"}"#).unwrap();
        assert_eq!(p.errcode(), 40058);
        assert!(p.event_list.is_empty());
        let b: BatchAnswer =
            serde_json::from_str(r#"{"errcode":0,"results":[{"errcode":0,"msgid":"x"},{"errcode":95013}]}"#)
                .unwrap();
        assert!(b.well_formed());
        let stats = super::super::http::HttpStats::default();
        let results = b.results_of(2, &stats, "customer_batch");
        assert_eq!(results.iter().map(|r| r.errcode).collect::<Vec<_>>(), [0, 95013]);
        assert_eq!(stats.errors(), 0);
    }

    /// Answers that decode but are not the protocol's (found by probing: a
    /// target answering them looked error-free).
    #[test]
    fn answers_without_what_the_protocol_gives_are_not_well_formed() {
        let p: Pulled = serde_json::from_str(r#"{"errcode":0,"errmsg":"ok"}"#).unwrap();
        assert!(!p.well_formed());
        let p: Pulled = serde_json::from_str(r#"{"errcode":0,"next_cursor":"c1","event_list":[]}"#).unwrap();
        assert!(p.well_formed());
        // `missed` is read when given, and a null does not fail the pull
        let p: Pulled = serde_json::from_str(r#"{"errcode":0,"next_cursor":"c","missed":7}"#).unwrap();
        assert_eq!(p.missed, Some(7));
        let p: Pulled = serde_json::from_str(r#"{"errcode":0,"next_cursor":"c","missed":null}"#).unwrap();
        assert!(p.well_formed() && p.missed.is_none());
        let b: BatchAnswer = serde_json::from_str(r#"{"errcode":0,"errmsg":"ok"}"#).unwrap();
        assert!(!b.well_formed());
        // one result for two actions: counted, and the second gets none
        let b: BatchAnswer = serde_json::from_str(r#"{"errcode":0,"results":[{"errcode":0}]}"#).unwrap();
        let stats = super::super::http::HttpStats::default();
        assert_eq!(b.results_of(2, &stats, "customer_batch").len(), 1);
        assert_eq!(stats.errors(), 1);
    }
}
