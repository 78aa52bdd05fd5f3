//! Transport security against real peers with a private CA made at test
//! time: email over STARTTLS and implicit TLS to aiosmtpd, `amqps://`
//! through a TLS terminator in front of the local RabbitMQ; and what
//! happens when the certificate is not trusted (nothing delivered, nothing
//! consumed, nothing sent in clear, the error says "certificate").

use std::cell::RefCell;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{json, Value};
use tocsin_tests::peers::{SinkTls, SmtpSink};
use tocsin_tests::rabbit::{self, Rabbit};
use tocsin_tests::tls::{TestCa, TlsProxy};
use tocsin_tests::{binary, event, free_port, wait_for, Setup, TempDir, Tocsin};

const WAIT: Duration = Duration::from_secs(30);

/// Email settings for a sink on `port` reached as `localhost` (the name
/// the test certificate is for), with `tls` and an optional `ca_file`.
fn smtp_env(port: u16, tls: &str, ca_file: Option<&TestCa>) -> Vec<(String, String)> {
    let mut env = vec![
        ("TOCSIN_ENGINE_WORKERS".into(), "1".into()),
        ("TOCSIN_SMTP_HOST".into(), "localhost".into()),
        ("TOCSIN_SMTP_PORT".into(), port.to_string()),
        ("TOCSIN_SMTP_TLS".into(), tls.into()),
        ("TOCSIN_SMTP_FROM".into(), "tocsin@example.com".into()),
        ("TOCSIN_SMTP_TO".into(), "ops@example.com".into()),
    ];
    if let Some(ca) = ca_file {
        env.push(("TOCSIN_SMTP_CA_FILE".into(), ca.ca_setting()));
    }
    env
}

async fn deliveries(t: &Tocsin, status: &str) -> anyhow::Result<Vec<Value>> {
    Ok(t.get_json(&format!("/v1/deliveries?status={status}"))
        .await?["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

async fn post_database_failure(t: &Tocsin, message: &str) -> anyhow::Result<()> {
    let (status, body) = t
        .post_events(&event(
            "DATABASE_CONNECTION_FAILED",
            "critical",
            "billing",
            message,
        ))
        .await?;
    anyhow::ensure!(status == 202, "POST /v1/events answered {status}: {body}");
    Ok(())
}

/// One alert email through a sink offering TLS per `mode`, trusted through
/// `ca_file`: delivered, recorded by the sink as received over TLS.
async fn email_over(mode: SinkTls, tls: &str) -> anyhow::Result<()> {
    let ca = TestCa::new("smtp")?;
    let smtp = SmtpSink::start_tls(mode, &ca.cert_file, &ca.key_file).await?;
    let t = Tocsin::start(Setup {
        env: smtp_env(smtp.port, tls, Some(&ca)),
        ..Setup::default()
    })
    .await?;
    post_database_failure(&t, &format!("over {tls}")).await?;
    wait_for("one email", WAIT, || async {
        Ok(smtp.messages()?.len() == 1)
    })
    .await?;
    let m = &smtp.messages()?[0];
    assert_eq!(m["tls"], true, "the sink saw the session encrypted: {m}");
    assert!(
        m["tls_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("TLSv1.")),
        "{m}"
    );
    assert_eq!(m["to"], json!(["ops@example.com"]), "{m}");
    assert!(
        m["text"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("over {tls}")),
        "{m}"
    );
    wait_for("the delivery recorded as delivered", WAIT, || async {
        Ok(deliveries(&t, "delivered").await?.len() == 1)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn email_over_starttls_trusting_a_private_ca() -> anyhow::Result<()> {
    email_over(SinkTls::StartTls, "starttls").await
}

#[tokio::test]
async fn email_over_implicit_tls_trusting_a_private_ca() -> anyhow::Result<()> {
    email_over(SinkTls::Implicit, "implicit").await
}

/// A server whose certificate no trusted root signed: the attempt fails on
/// the certificate, and no mail reaches the server, not even in clear (the
/// sink would accept mail in clear and record it with "tls": false).
#[tokio::test]
async fn an_untrusted_smtp_certificate_fails_the_attempt_and_sends_nothing() -> anyhow::Result<()> {
    let ca = TestCa::new("untrusted-smtp")?;
    let smtp = SmtpSink::start_tls(SinkTls::StartTlsOptional, &ca.cert_file, &ca.key_file).await?;
    let mut env = smtp_env(smtp.port, "starttls", None);
    env.push(("TOCSIN_DELIVERY_ATTEMPTS".into(), "2".into()));
    env.push(("TOCSIN_DELIVERY_BASE_MS".into(), "200".into()));
    let t = Tocsin::start(Setup {
        env,
        ..Setup::default()
    })
    .await?;
    post_database_failure(&t, "must not be sent").await?;
    let last = RefCell::new(Value::Null);
    wait_for("a dead letter after two failed attempts", WAIT, || async {
        let dead = deliveries(&t, "dead").await?;
        let failed = deliveries(&t, "failed").await?;
        let done = dead.len() == 1;
        *last.borrow_mut() = json!({ "dead": dead, "failed": failed });
        Ok(done)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}; deliveries: {}", last.borrow()))?;
    let dead = &deliveries(&t, "dead").await?[0];
    assert_eq!(dead["attempts"], 2, "{dead}");
    let error = dead["lastError"].as_str().unwrap_or("");
    assert!(
        error.contains("certificate") && error.contains("UnknownIssuer"),
        "the error names the certificate problem: {dead}"
    );
    assert!(
        deliveries(&t, "delivered").await?.is_empty(),
        "nothing was delivered"
    );
    assert!(
        smtp.messages()?.is_empty(),
        "no mail reached the server, in clear or not: {:?}",
        smtp.messages()?
    );
    Ok(())
}

/// A `ca_file` that is not a PEM certificate stops `tocsin run` at once,
/// naming the setting and the file.
#[tokio::test]
async fn a_ca_file_that_is_not_a_certificate_stops_start_up_naming_it() -> anyhow::Result<()> {
    let tmp = TempDir::new("bad-ca")?;
    let bad = tmp.path().join("not-a-ca.pem");
    std::fs::write(&bad, "hello\n")?;
    for var in ["TOCSIN_SMTP_CA_FILE", "TOCSIN_AMQP_CA_FILE"] {
        let stderr_file = tmp.path().join(format!("{var}.stderr"));
        let mut child = Command::new(binary()?)
            .arg("run")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()?))
            .arg("--rules")
            .arg(tmp.path().join("rules"))
            .arg("--plugins")
            .arg(tmp.path().join("plugins"))
            .arg("--data")
            .arg(tmp.path().join("data"))
            .env(var, &bad)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_file)?)
            .spawn()?;
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("tocsin kept running with {var} = a non-PEM file");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let stderr = std::fs::read_to_string(&stderr_file)?;
        assert!(!status.success(), "{var}: {status}; {stderr}");
        assert!(
            stderr.contains("ca_file") && stderr.contains(&bad.display().to_string()),
            "{var}: the error names the setting and the file: {stderr}"
        );
        assert!(stderr.contains("no certificate"), "{var}: {stderr}");
    }
    Ok(())
}

const AMQP_RULE: &str = r#"
[match]
codes = ["AMQPS_TEST"]
[aggregate]
plugin = "threshold"
config = { threshold = 1, window = "1h", samples = 1 }
[[channels]]
plugin = "log"
"#;

/// An engine consuming `rabbit`'s names through the TLS `proxy` at
/// `amqps://…@localhost:PORT`, trusting `ca` if given.
async fn amqps_engine(
    rabbit: &Rabbit,
    proxy: &TlsProxy,
    ca: Option<&TestCa>,
) -> anyhow::Result<Tocsin> {
    let mut env: Vec<(String, String)> = rabbit
        .env()
        .into_iter()
        .filter(|(k, _)| k != "TOCSIN_AMQP_URL")
        .collect();
    env.push((
        "TOCSIN_AMQP_URL".into(),
        format!("amqps://guest:guest@localhost:{}/%2f", proxy.port),
    ));
    if let Some(ca) = ca {
        env.push(("TOCSIN_AMQP_CA_FILE".into(), ca.ca_setting()));
    }
    env.push(("TOCSIN_ENGINE_WORKERS".into(), "1".into()));
    Tocsin::start(Setup {
        plugins: vec!["threshold", "log"],
        default_rules: false,
        rules: vec![("amqps.toml".into(), AMQP_RULE.into())],
        env,
        ..Setup::default()
    })
    .await
}

fn amqps_event(id: &str) -> Value {
    json!({
        "errorCode": "AMQPS_TEST", "severity": "high", "serviceName": "svc",
        "message": "over amqps", "eventId": id,
    })
}

#[tokio::test]
async fn amqps_through_a_tls_terminator_trusting_a_private_ca() -> anyhow::Result<()> {
    let ca = TestCa::new("amqps")?;
    let proxy = TlsProxy::start(&ca, "127.0.0.1:5672").await?;
    let rabbit = Rabbit::new("amqps").await?;
    let t = amqps_engine(&rabbit, &proxy, Some(&ca)).await?;
    wait_for("tocsin consuming over amqps (/readyz)", WAIT, || async {
        let r = t.http.get(t.url("/readyz")).send().await?;
        Ok(r.status() == 200)
    })
    .await?;
    assert!(
        proxy.amqp_sessions() >= 1,
        "AMQP went through the TLS terminator: {} handshakes, {} AMQP sessions",
        proxy.handshakes(),
        proxy.amqp_sessions()
    );
    assert_eq!(proxy.refused(), 0, "no handshake failed");
    let readyz = t.get_json("/readyz").await?;
    assert_eq!(readyz["amqp"]["connected"], true, "{readyz}");

    rabbit.publish_event(&amqps_event("amqps-1")).await?;
    wait_for("the alert from the amqps event", WAIT, || async {
        let v = t.get_json("/v1/notifications?rule=amqps").await?;
        Ok(v["notifications"].as_array().is_some_and(|n| n.len() == 1))
    })
    .await?;
    assert_eq!(
        t.metric("tocsin_events_received_total", &[("source", "amqp")])
            .await?,
        1.0
    );
    wait_for("the message acknowledged", WAIT, || async {
        Ok(rabbit.ready(&rabbit.queue).await? == 0)
    })
    .await?;
    drop(t);
    rabbit.cleanup().await;
    Ok(())
}

/// Declares `rabbit`'s exchange and queue as tocsin would (same arguments)
/// and publishes one event, so that an engine that never connects leaves
/// it there for everyone to see.
async fn publish_before_any_consumer(rabbit: &Rabbit, body: &Value) -> anyhow::Result<()> {
    let conn = Connection::connect(rabbit::URL, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        rabbit.exchange.as_str().into(),
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(format!("{}.retry", rabbit.exchange).as_str().into()),
    );
    ch.queue_declare(
        rabbit.queue.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    ch.queue_bind(
        rabbit.queue.as_str().into(),
        rabbit.exchange.as_str().into(),
        "system.error.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.basic_publish(
        rabbit.exchange.as_str().into(),
        "system.error.device".into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        &serde_json::to_vec(body)?,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await?
    .await?;
    let _ = conn.close(200, "published".into()).await;
    Ok(())
}

#[tokio::test]
async fn amqps_with_an_untrusted_certificate_is_refused_and_consumes_nothing() -> anyhow::Result<()>
{
    let ca = TestCa::new("untrusted-amqps")?;
    let proxy = TlsProxy::start(&ca, "127.0.0.1:5672").await?;
    let rabbit = Rabbit::new("amqps-untrusted").await?;
    publish_before_any_consumer(&rabbit, &amqps_event("amqps-untrusted-1")).await?;
    assert_eq!(rabbit.ready(&rabbit.queue).await?, 1);

    let t = amqps_engine(&rabbit, &proxy, None).await?;
    let last = RefCell::new(Value::Null);
    wait_for("/readyz reporting the certificate error", WAIT, || async {
        let r = t.http.get(t.url("/readyz")).send().await?;
        let code = r.status().as_u16();
        let body: Value = r.json().await?;
        let error = body["amqp"]["last_error"].as_str().unwrap_or("");
        let done = code == 503 && error.contains("certificate");
        *last.borrow_mut() = body;
        Ok(done)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}; /readyz: {}", last.borrow()))?;
    let last = last.into_inner();
    assert_eq!(last["amqp"]["connected"], false, "{last}");
    assert!(
        last["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "RabbitMQ is not connected")),
        "{last}"
    );
    // It keeps retrying, and every try is refused at the handshake.
    wait_for("a second refused handshake", WAIT, || async {
        Ok(proxy.refused() >= 2)
    })
    .await?;
    assert_eq!(proxy.amqp_sessions(), 0, "no AMQP byte went over TLS");
    assert_eq!(
        t.metric("tocsin_events_received_total", &[("source", "amqp")])
            .await?,
        0.0
    );
    assert_eq!(
        rabbit.ready(&rabbit.queue).await?,
        1,
        "the event is still in the queue"
    );
    drop(t);
    rabbit.cleanup().await;
    Ok(())
}
