//! Property tests (issue 17, "beyond the list"): no input panics the
//! scenario parser or the service's handlers, every refusal is a clear
//! error, and the service's counters stay consistent whatever the calls.
//! Traffic goes only to loopback; every case is bounded.

mod service_util;

use std::panic::{AssertUnwindSafe, catch_unwind};

use kfsim::scenario::Scenario;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Pieces a scenario is made of, valid and not, for the generator to
/// combine: real keys with odd values, and junk.
fn fragment() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("1e-160".to_owned()),
        Just("1e308".to_owned()),
        Just("18446744073710".to_owned()),
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        (0u32..2000).prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
    ];
    let duration = prop_oneof![
        Just("\"0s\"".to_owned()),
        Just("\"1e300h\"".to_owned()),
        Just("\"20\"".to_owned()),
        (0u32..100_000).prop_map(|n| format!("\"{n}s\"")),
        "[0-9.]{1,6}[a-zµ]{0,3}".prop_map(|s| format!("\"{s}\"")),
    ];
    // each kind with its own parameters, so that odd values get past the
    // key checks to the checks of the values
    let dist =
        (number.clone(), number.clone(), duration.clone(), duration.clone()).prop_flat_map(|(n, m, t, u)| {
            prop_oneof![
                Just(format!("{{ dist = \"exponential\", mean = {t} }}")),
                Just(format!("{{ dist = \"gamma\", mean = {t}, cv = {n} }}")),
                Just(format!("{{ dist = \"lognormal\", mu = {n}, sigma = {m} }}")),
                Just(format!("{{ dist = \"lognormal\", median = {t}, p95 = {u} }}")),
                Just(format!("{{ dist = \"uniform\", min = {t}, max = {u} }}")),
                Just(format!("{{ dist = \"constant\", value = {t} }}")),
                Just(format!("{{ dist = \"geometric\", mean = {n} }}")),
                Just(format!("{{ dist = \"weibull\", mean = {t} }}")),
            ]
        });
    prop_oneof![
        Just("name = \"p\"".to_owned()),
        Just("[[account]]\nname = \"a\"".to_owned()),
        Just("[[agents]]\ncount = 2\nreply_delay = \"1m\"".to_owned()),
        Just("[[entry]]\nscene = \"web\"\nrate = \"1/min\"".to_owned()),
        Just("[target]".to_owned()),
        Just("[gates]".to_owned()),
        Just("\"sessions.abandoned\" = \"< 3\"".to_owned()),
        "[a-z_]{1,12}".prop_flat_map(move |k| number.clone().prop_map(move |n| format!("{k} = {n}"))),
        prop_oneof![
            Just("duration"),
            Just("warmup"),
            Just("drain"),
            Just("prefer_last_within"),
            Just("think")
        ]
        .prop_flat_map(move |k| duration.clone().prop_map(move |d| format!("{k} = {d}"))),
        prop_oneof![Just("reply_delay"), Just("patience"), Just("wrap_up"), Just("messages")]
            .prop_flat_map(move |k| dist.clone().prop_map(move |d| format!("{k} = {d}"))),
        "url = \"[ -~]{0,30}\"".prop_map(|s| s),
        "rate = \"[0-9e.+-]{1,8}/(s|min|h|x)\"".prop_map(|s| s),
        "profile = \\[\\{ at = \"[0-9]{1,3}h\", factor = [0-9.-]{1,5} \\}\\]".prop_map(|s| s),
        "[ -~\n]{0,40}".prop_map(|s| s),
    ]
}

/// A time distribution with odd parameters (each kind with its own keys,
/// so that they get past the key checks to the checks of the values).
fn time_dist() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("1e-160".to_owned()),
        Just("1e308".to_owned()),
        Just("0.5".to_owned()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
    ];
    let duration = prop_oneof![
        Just("\"0s\"".to_owned()),
        Just("\"1e300h\"".to_owned()),
        Just("\"30s\"".to_owned()),
        (0u32..100_000).prop_map(|n| format!("\"{n}ms\"")),
    ];
    (number.clone(), number, duration.clone(), duration).prop_flat_map(|(n, m, t, u)| {
        prop_oneof![
            Just(format!("{{ dist = \"exponential\", mean = {t} }}")),
            Just(format!("{{ dist = \"gamma\", mean = {t}, cv = {n} }}")),
            Just(format!("{{ dist = \"lognormal\", mu = {n}, sigma = {m} }}")),
            Just(format!("{{ dist = \"lognormal\", median = {t}, p95 = {u} }}")),
            Just(format!("{{ dist = \"uniform\", min = {t}, max = {u} }}")),
            Just(t),
        ]
    })
}

/// Junk anywhere, or a scenario with odd values in every table.
fn scenario_text() -> impl Strategy<Value = String> {
    // mostly nothing more: a scenario must stay valid often enough for its
    // samplers to be built
    let lines = || prop::option::weighted(0.2, fragment()).prop_map(Option::unwrap_or_default);
    let structured = (time_dist(), time_dist(), lines(), lines(), lines(), lines()).prop_map(
        |(reply, patience, top, account, agents, entry)| {
            format!(
                "name = \"p\"\n{top}\n[[account]]\nname = \"a\"\n{account}\n[[agents]]\ncount = 2\n\
                 reply_delay = {reply}\n{agents}\n[[entry]]\nscene = \"web\"\nrate = \"1/min\"\n\
                 patience = {patience}\n{entry}\n"
            )
        },
    );
    prop_oneof![prop::collection::vec(fragment(), 0..16).prop_map(|parts| parts.join("\n")), structured]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The parser never panics; a refusal names the file, line and column;
    /// an accepted scenario builds its samplers without a panic (gamma
    /// with cv = 1e-160 passed once, then panicked there).
    #[test]
    fn the_scenario_parser_never_panics(text in scenario_text()) {
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            Scenario::parse(&text, "p.toml").and_then(|s| kfsim::gate::bind(&s).map(|_| s))
        }));
        let parsed = parsed.map_err(|_| TestCaseError::fail(format!("panicked on:\n{text}")))?;
        match parsed {
            Err(e) => {
                let e = e.to_string();
                prop_assert!(e.starts_with("p.toml:"), "{e}");
                let head = e.lines().next().unwrap_or("");
                let place: Vec<&str> = head.splitn(4, ':').collect();
                prop_assert!(place.len() == 4 && place[1].parse::<usize>().is_ok() && place[2].parse::<usize>().is_ok(), "{e}");
            }
            Ok(sc) => {
                let built = catch_unwind(AssertUnwindSafe(|| {
                    for e in &sc.entries {
                        let _ = kfsim::workload::EntryBehaviour::new(e, sc.seed, sc.duration_us);
                    }
                    for g in &sc.groups {
                        let _ = kfsim::workload::TimeSampler::new(&g.reply_delay);
                        let _ = kfsim::workload::TimeSampler::new(&g.wrap_up);
                    }
                }));
                prop_assert!(built.is_ok(), "samplers panicked for:\n{text}");
            }
        }
    }
}

/// A JSON value of any shape, small.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(18446744073710u64)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        Just(Value::from("x".repeat(3000))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("open_kfid".to_owned()),
                    Just("channel_id".to_owned()),
                    Just("customer".to_owned()),
                    Just("type".to_owned()),
                    Just("msgtype".to_owned()),
                    Just("text".to_owned()),
                    Just("msgmenu".to_owned()),
                    Just("list".to_owned()),
                    Just("actions".to_owned()),
                    Just("servicer_userid".to_owned()),
                    Just("external_userid".to_owned()),
                    Just("service_state".to_owned()),
                    Just("reception_rule".to_owned()),
                    Just("limit".to_owned()),
                    Just("cursor".to_owned()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const PATHS: &[&str] = &[
    "/cgi-bin/kf/account/add",
    "/cgi-bin/kf/account/update",
    "/cgi-bin/kf/account/list",
    "/cgi-bin/kf/add_contact_way",
    "/cgi-bin/kf/servicer/add",
    "/cgi-bin/kf/servicer/del",
    "/cgi-bin/kf/service_state/get",
    "/cgi-bin/kf/service_state/trans",
    "/cgi-bin/kf/sync_msg",
    "/cgi-bin/kf/send_msg",
    "/cgi-bin/kf/send_msg_on_event",
    "/cgi-bin/kf/customer/batchget",
    "/cgi-bin/kf/get_corp_statistic",
    "/cgi-bin/kf/get_servicer_statistic",
    "/sim/customer/batch",
    "/sim/customer/pull",
    "/sim/servicer/set_status",
    "/sim/servicer/reply",
    "/sim/servicer/transfer",
    "/sim/servicer/end",
    "/sim/servicer/batch",
];

/// A call: a path and a body, with real ids put in where the body names
/// them (so that calls reach past the id checks).
fn call() -> impl Strategy<Value = (usize, Value, bool)> {
    (0..PATHS.len(), json_value(), any::<bool>())
}

/// Put the account's and channel's real ids in where the body has the
/// keys, and make a customer batch of real messages now and then.
fn fill(body: Value, kf: &str, ch: &str, real_batch: bool) -> Value {
    let mut body = match body {
        Value::Object(m) => Value::Object(m),
        other => return other,
    };
    for (key, id) in [("open_kfid", kf), ("channel_id", ch)] {
        if body.get(key).is_some() {
            body[key] = id.into();
        }
    }
    if real_batch {
        body["channel_id"] = ch.into();
        body["actions"] = json!([
            {"type": "message", "customer": "p1", "open_kfid": kf, "client_msgid": "x1", "msgtype": "text", "text": {"content": "hi"}},
            {"type": "leave", "customer": "p2", "open_kfid": kf},
            {"type": "message", "customer": "p2", "open_kfid": kf, "client_msgid": "x2", "msgtype": "text", "text": {"content": "hi"}}
        ]);
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random bodies to every POST endpoint: each answer is HTTP 200 (or
    /// 4xx) with a JSON errcode and, when refused, an errmsg; the service
    /// never drops a connection or answers 500; and its counters agree:
    /// sessions started − ended = sessions open now.
    #[test]
    fn api_handlers_refuse_clearly_and_keep_their_counts(calls in prop::collection::vec(call(), 1..24)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let server = service_util::Server::empty().await;
            let mut c = server.client().await;
            c.login().await;
            let kf = service_util::account(&mut c, "kf", &["s1", "s2"], 2, json!({})).await;
            let ch = service_util::channel(&mut c).await;
            for (path, body, real) in calls {
                let path = PATHS[path];
                let body = fill(body, &kf, &ch, real && path == "/sim/customer/batch");
                let (status, v) = c.post_status(path, &body).await;
                prop_assert!(status == 200 || (400..500).contains(&status), "{path} {body}: HTTP {status} {v}");
                let code = v["errcode"].as_i64();
                prop_assert!(code.is_some(), "{path} {body}: no errcode in {v}");
                if code != Some(0) {
                    prop_assert!(v["errmsg"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {v}");
                }
            }
            let f = server.svc.with_state(|st, _| st.figures());
            let open: u64 = f.accounts.iter().flat_map(|a| a.by_state).sum();
            prop_assert_eq!(f.counters.sessions_started - f.counters.ended, open, "{:?}", f);
            server.stop().await.unwrap();
            Ok(())
        })?;
    }
}
